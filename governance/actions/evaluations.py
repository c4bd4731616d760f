"""System evaluations: requested by actions, executed by the job backend (governance.evaluator), never typed in.

An evaluation's state changes (requested, started, succeeded, failed, cancelled) are audited. Its per-example
results are written once, with the transition to succeeded. Work is announced with the `evaluation_requested`
signal on commit; the job backend listens (actions never import it).

Lock order: the evaluation row, then (when it completes) the change requests that wait on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.actions._common import create, expect_status, expect_transition, send_on_commit, transition
from governance.audit import record_event
from governance.errors import IllegalTransition
from governance.models import (
    LIVE_EVALUATION_STATUSES,
    Dataset,
    Evaluation,
    EvaluationResult,
    EvaluationStatus,
    OptimizationRun,
    Program,
    payload_hash,
)
from governance.signals import evaluation_finished, evaluation_requested
from optimizer import Usage, canonical_json

# Endpoint settings that change nothing of the model's behaviour but where it is reached (kept in the record,
# left out of nothing: a different endpoint may serve a different build of "the same" model).
_ENDPOINT_KEYS = ("api_base", "mode", "timeout", "num_retries", "max_concurrency")
_BEHAVIOUR_KEYS = ("model", "temperature", "max_tokens", "mode")


def evaluation_state(evaluation: Evaluation) -> dict[str, Any]:
    """The audited picture of an evaluation."""
    return {"status": evaluation.status, "content_hash": evaluation.content_hash, "dataset": evaluation.dataset_id,
            "dataset_hash": evaluation.dataset_hash, "lm": evaluation.lm_config, "metric": evaluation.metric,
            "score": evaluation.score, "examples": evaluation.examples, "errors": evaluation.errors,
            "calls": evaluation.calls, "tokens": evaluation.prompt_tokens + evaluation.completion_tokens,
            "cost_usd": round(evaluation.cost_usd, 6), "run": evaluation.run_id, "error": evaluation.error[:500]}


def evaluation_lm(program: Program, payload: dict[str, Any]) -> dict[str, Any]:
    """The LM configuration a payload is evaluated with: the model behaviour the payload names (what an approval
    covers) reached through the program's endpoint settings. No secret, no cache path."""
    endpoint = {k: v for k, v in (program.lm_config or {}).items() if k in _ENDPOINT_KEYS}
    behaviour = {k: v for k, v in payload.get("lm", {}).items() if k in _BEHAVIOUR_KEYS}
    return {**endpoint, **behaviour}


def lm_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def _live(program: Program, content: str, dataset: Dataset, key: str, metric: str) -> Evaluation | None:
    return Evaluation.objects.filter(program=program, content_hash=content, dataset_hash=dataset.content_hash,
                                     lm_key=key, metric=metric, status__in=LIVE_EVALUATION_STATUSES).first()


@transaction.atomic
def request_evaluation(program: Program, payload: dict[str, Any], dataset: Dataset, *, actor: Any,
                       run: OptimizationRun | None = None, announce: bool = True,
                       metric: str | None = None) -> Evaluation:
    """The evaluation of `payload` on `dataset` with the payload's LM: an existing queued, running or succeeded
    one for the same key, else a new queued one (audited "evaluation.requested", announced on commit).

    `announce=False` leaves execution to the caller (the runner evaluates inline, inside the run's budget).
    `metric` (a registered name; callers check it) scores with another metric than the program's, e.g. an LM
    judge in a comparison; the program's metric stays the only one gates and change requests read.
    """
    config = evaluation_lm(program, payload)
    key, content, metric = lm_key(config), payload_hash(payload), metric or program.metric
    existing = _live(program, content, dataset, key, metric)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():  # savepoint: a concurrent request for the same key may win the insert
            evaluation = create(Evaluation, by=actor, program=program, content_hash=content, payload=payload,
                                dataset=dataset, dataset_hash=dataset.content_hash, lm_config=config, lm_key=key,
                                metric=metric, run=run, examples=dataset.row_count,
                                requested_by=actor if getattr(actor, "pk", None) else None)
    except IntegrityError:
        return _live(program, content, dataset, key, metric)  # type: ignore[return-value]
    record_event("evaluation.requested", actor=actor, obj=evaluation, program=program,
                 after=evaluation_state(evaluation))
    if announce:
        send_on_commit(evaluation_requested, Evaluation, evaluation_id=evaluation.pk)
    return evaluation


@transaction.atomic
def retry_evaluation(evaluation: Evaluation, *, actor: Any) -> Evaluation:
    """A failed or cancelled evaluation asked again: a new evaluation of the same key (the old one stays)."""
    expect_status(evaluation.status, [EvaluationStatus.FAILED, EvaluationStatus.CANCELLED],
                  subject=f"evaluation {evaluation.pk}", doing="be retried")
    return request_evaluation(evaluation.program, evaluation.payload, evaluation.dataset, actor=actor,
                              metric=evaluation.metric)


@transaction.atomic
def claim_evaluation(evaluation_id: int, *, worker: str) -> Evaluation | None:
    """queued -> running for `worker`; None when another executor has it or it has finished."""
    evaluation = Evaluation.objects.select_for_update(no_key=True).filter(pk=evaluation_id).first()
    if evaluation is None or evaluation.status != EvaluationStatus.QUEUED:
        return None
    return transition(evaluation, EvaluationStatus.RUNNING, actor=None, action="evaluation.started",
                      state=evaluation_state, after={"worker": worker}, worker=worker, started_at=timezone.now())


def record_evaluation_progress(evaluation_id: int, *, done: int, usage: Usage) -> None:
    """Examples done and spending so far (display only, not audited)."""
    Evaluation.objects.filter(pk=evaluation_id).update(examples_done=done, **_usage_fields(usage))


@dataclass(frozen=True)
class ExampleOutcome:
    """One example's result as the evaluator hands it over."""

    index: int
    predicted: dict[str, Any]
    raw: str
    score: float
    error: str
    feedback: dict[str, str] | None = None  # a judge's verdict and reason


@transaction.atomic
def complete_evaluation(evaluation: Evaluation, *, outcomes: Sequence[ExampleOutcome], usage: Usage,
                        seconds: float) -> Evaluation:
    """running -> succeeded with every example's result, in one transaction; audited with the score."""
    evaluation = _locked_running(evaluation, doing="succeed")
    EvaluationResult.objects.bulk_create(
        EvaluationResult(evaluation=evaluation, index=o.index, predicted=o.predicted, raw=o.raw, score=o.score,
                         error=o.error, feedback=o.feedback or None) for o in outcomes)
    score = sum(o.score for o in outcomes) / len(outcomes) if outcomes else 0.0
    return _finish(evaluation, EvaluationStatus.SUCCEEDED, usage=usage, seconds=seconds, score=score,
                   examples=len(outcomes), errors=sum(1 for o in outcomes if o.error))


@transaction.atomic
def fail_evaluation(evaluation: Evaluation, *, error: str, usage: Usage, seconds: float,
                    cancelled: bool = False) -> Evaluation:
    """running (or queued) -> failed | cancelled with the reason; no per-example results are kept."""
    evaluation = Evaluation.objects.select_for_update(no_key=True).get(pk=evaluation.pk)
    status = EvaluationStatus.CANCELLED if cancelled else EvaluationStatus.FAILED
    expect_transition(evaluation, status, doing="end")
    return _finish(evaluation, status, usage=usage, seconds=seconds, error=error)


def _locked_running(evaluation: Evaluation, *, doing: str) -> Evaluation:
    evaluation = Evaluation.objects.select_for_update(no_key=True).get(pk=evaluation.pk)
    expect_transition(evaluation, EvaluationStatus.SUCCEEDED, doing=doing)
    return evaluation


def _finish(evaluation: Evaluation, status: str, *, usage: Usage, seconds: float, **values: Any) -> Evaluation:
    if status == EvaluationStatus.SUCCEEDED:
        values["examples_done"] = values.get("examples", evaluation.examples)
    transition(evaluation, status, actor=None, action=f"evaluation.{status}", state=evaluation_state,
               reason=values.get("error", evaluation.error)[:500], finished_at=timezone.now(),
               seconds=round(seconds, 3), **_usage_fields(usage), **values)
    send_on_commit(evaluation_finished, Evaluation, evaluation_id=evaluation.pk)
    return evaluation


def _usage_fields(usage: Usage) -> dict[str, Any]:
    """Absolute totals (the evaluator reports cumulative usage of its own LM)."""
    return {"calls": usage.calls, "cached_calls": usage.cached_calls, "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens, "cost_usd": usage.cost_usd}


def aligned_scores(candidate: Evaluation, baseline: Evaluation) -> tuple[list[float], list[float]]:
    """Per-example scores of two evaluations of the same dataset, aligned by example index."""
    if candidate.dataset_hash != baseline.dataset_hash:
        raise IllegalTransition(f"evaluations {candidate.pk} and {baseline.pk} are of different datasets")
    base = dict(baseline.results.values_list("index", "score"))
    pairs = [(score, base[index]) for index, score in candidate.results.values_list("index", "score")
             if index in base]
    return [c for c, _ in pairs], [b for _, b in pairs]
