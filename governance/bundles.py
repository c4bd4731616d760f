"""Build a signed export bundle for a prompt version from what the database knows about it.

No writes here: `governance.actions.exports` checks state and permission, calls `build_bundle`, and records
the Export row and audit event. The format itself lives in `optimizer.bundle` (verifiable without Django).
"""

from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.utils import timezone

from governance.audit import printed_name
from governance.models import (
    ChangeRequest,
    ChangeRequestStatus,
    Decision,
    Evaluation,
    EvaluationStatus,
    PromptVersion,
    ReleaseLabel,
    Review,
)
from governance.signing import signing_key
from optimizer import ProgramSpec, sign_bundle, to_dspy_state

# Keys a run config may use for the task model and the instruction-proposal model (first match wins).
_TASK_LM_KEYS = ("task_lm", "lm", "task_model")
_PROPOSAL_LM_KEYS = ("proposal_lm", "prompt_lm", "proposal_model")


def utc_iso(value: datetime | None) -> str | None:
    """`2026-01-02T09:00:00Z`: the UTC time a signature manifestation shows."""
    if value is None:
        return None
    return value.astimezone(dt_timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_bundle(version: PromptVersion, *, label: ReleaseLabel | None = None, exported_by: Any) -> dict[str, Any]:
    """The signed bundle of `version` (the caller has checked that it is approved and may be exported)."""
    payload = version.payload
    dspy_state = to_dspy_state(ProgramSpec.from_dict(payload["program"]))
    manifest = build_manifest(version, label=label, exported_by=exported_by)
    return sign_bundle(manifest, payload, dspy_state, signing_key())


def build_manifest(version: PromptVersion, *, label: ReleaseLabel | None, exported_by: Any) -> dict[str, Any]:
    program = version.program
    return {
        "program": {"slug": program.slug, "name": program.name},
        "version": {"number": version.number, "status": version.status, "origin": version.origin,
                    "parent": version.parent.number if version.parent_id else None,
                    "author": printed_name(version.created_by), "created_at": utc_iso(version.created_at),
                    "approved_at": utc_iso(version.approved_at)},
        "content_hash": version.content_hash,
        "approvals": approvals(version),
        "release": _release(label),
        "provenance": provenance(version),
        "evaluation": evidence(version),
        "exported_at": utc_iso(timezone.now()),
        "exported_by": printed_name(exported_by),
    }


def approvals(version: PromptVersion) -> list[dict[str, Any]]:
    """Signature manifestations of the live approvals bound to the version's current content hash."""
    reviews = (Review.objects.filter(version=version, decision=Decision.APPROVE, voided=False,
                                     content_hash=version.content_hash)
               .order_by("signed_at", "id"))
    return [{"name": review.printed_name, "signed_at": utc_iso(review.signed_at), "meaning": review.meaning,
             "statement": review.get_meaning_display(), "content_hash": review.content_hash,
             "change_request": review.change_request_id, "auth_method": review.auth_method,
             **_provider_proof(review)}
            for review in reviews]


def _provider_proof(review: Review) -> dict[str, Any]:
    """A signature through the identity provider also names the provider, the signer there and when it
    re-authenticated them."""
    if review.auth_method != "oidc":
        return {}
    return {"auth_issuer": review.auth_issuer, "auth_subject": review.auth_subject,
            "auth_time": utc_iso(review.auth_time) if review.auth_time else None}


def provenance(version: PromptVersion) -> dict[str, Any]:
    """Where the content came from: the optimizer run (seed, preset, data, models) and the scores."""
    run = version.run
    config = run.config if run is not None else {}
    return {
        "origin": version.origin,
        "run_id": run.pk if run is not None else None,
        "seed": config.get("seed"),
        "preset": config.get("preset"),
        "dataset_hashes": run.dataset_hashes if run is not None else {},
        "study_name": run.study_name if run is not None else "",
        "metric": scoring_metric(version),
        "scores": system_scores(version),
        "model": _model(config, _TASK_LM_KEYS) or version.payload.get("lm", {}).get("model"),
        "proposal_model": _model(config, _PROPOSAL_LM_KEYS),
    }


def _approving_change_request(version: PromptVersion) -> ChangeRequest | None:
    return (ChangeRequest.objects.filter(version=version, status=ChangeRequestStatus.APPROVED)
            .select_related("candidate_evaluation", "baseline_evaluation").order_by("-closed_at", "-id").first())


def _scoring_evaluation(version: PromptVersion) -> Evaluation | None:
    """The system evaluation the version's approval read (its approving change request's, else its latest's)."""
    cr = _approving_change_request(version) or version.change_requests.order_by("-id").first()
    evaluation = cr.candidate_evaluation if cr is not None else None
    return evaluation if evaluation is not None and evaluation.status == EvaluationStatus.SUCCEEDED else None


def system_scores(version: PromptVersion) -> dict[str, float]:
    """The version's scores as the system measured them for its approval (test split); never author-typed."""
    evaluation = _scoring_evaluation(version)
    return {} if evaluation is None else {"test": evaluation.score}


def scoring_metric(version: PromptVersion) -> str:
    """The metric the version's scores were measured with (the program's may have changed since)."""
    evaluation = _scoring_evaluation(version)
    return version.program.metric if evaluation is None else evaluation.metric


def evidence(version: PromptVersion) -> dict[str, Any] | None:
    """The system evaluations the approval rested on: both versions on the same rows, and their comparison."""
    cr = _approving_change_request(version)
    if cr is None or cr.candidate_evaluation is None:
        return None
    return {"change_request": cr.pk, "candidate": _evaluation(cr.candidate_evaluation),
            "baseline": _evaluation(cr.baseline_evaluation),
            "comparison": {k: cr.comparison.get(k) for k in ("examples", "delta", "wins", "losses", "p_value",
                                                             "method", "ci_low", "ci_high", "significant_gain")}
            if cr.comparison else None,
            "checks": cr.checks}


def _evaluation(evaluation: Evaluation | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    return {"id": evaluation.pk, "content_hash": evaluation.content_hash, "dataset_hash": evaluation.dataset_hash,
            "model": evaluation.lm_config.get("model"), "metric": evaluation.metric, "status": evaluation.status,
            "score": evaluation.score, "examples": evaluation.examples, "errors": evaluation.errors,
            "finished_at": utc_iso(evaluation.finished_at)}


def _release(label: ReleaseLabel | None) -> dict[str, Any] | None:
    if label is None:
        return None
    serving_fallback = bool(label.kill_switch and label.fallback_version_id)
    return {"label": label.name, "kill_switch": label.kill_switch,
            "serving": "fallback" if serving_fallback else "release"}


def _model(config: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """A model name only: LM configs may hold an api_key, which must never reach a bundle."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, dict) and isinstance(value.get("model"), str):
            return value["model"]
        if isinstance(value, str):
            return value
    return None
