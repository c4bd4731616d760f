"""Drift check: the production version re-scored on labeled data that arrived after its approval.

The baseline is the score the system measured when the version was approved (the candidate evaluation of its
approving change request); the current score is a system evaluation of the same content on the new data. A drop of more
than the program's `drift_threshold` percentage points raises one DriftAlert per (version, dataset), an audit
event "drift.alert" and the `drift_alert_raised` signal (webhooks) on commit. A check that finds no drift
writes nothing: it is a read, and nightly reads would only add noise to the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from governance.actions._common import PRODUCTION_LABEL, create, send_on_commit
from governance.actions.reviews import production_version
from governance.audit import record_event
from governance.models import (
    ChangeRequest,
    ChangeRequestStatus,
    Dataset,
    DriftAlert,
    EvaluationStatus,
    Program,
    PromptVersion,
    Split,
)
from governance.permissions import require_member
from governance.signals import drift_alert_raised

# Splits that hold labels reviewers trust for scoring; new train data is for the next optimization.
DRIFT_SPLITS = (Split.TEST, Split.VAL)


@dataclass(frozen=True)
class DriftCheck:
    """One check's outcome; `alert` is set when the drop exceeded the threshold."""

    version: PromptVersion
    dataset: Dataset
    baseline: float
    current: float
    threshold: float
    alert: DriftAlert | None

    @property
    def drop_points(self) -> float:
        return round((self.baseline - self.current) * 100, 2)

    def summary(self) -> dict[str, Any]:
        return {"program": self.version.program.slug, "version": self.version.number, "dataset": self.dataset.pk,
                "baseline": self.baseline, "current": self.current, "drop_points": self.drop_points,
                "threshold": self.threshold, "alert": self.alert.pk if self.alert else None}


def programs_with_production() -> QuerySet[Program]:
    return Program.objects.filter(labels__name=PRODUCTION_LABEL).distinct()


def fresh_datasets(program: Program, version: PromptVersion) -> list[Dataset]:
    """Labeled datasets not used for the version's approval: imported after it was approved (or created) and
    not among the datasets of the run that produced it. Newest first."""
    since = version.approved_at or version.created_at
    used = set((version.run.dataset_hashes or {}).values()) if version.run_id else set()
    newer = program.datasets.filter(created_at__gt=since, split__in=DRIFT_SPLITS).order_by("-created_at", "-id")
    return [dataset for dataset in newer if dataset.content_hash not in used]


def baseline_score(version: PromptVersion) -> float | None:
    """The score the system measured for the version's approval (its approving change request's evaluation)."""
    cr = (ChangeRequest.objects.filter(version=version, status=ChangeRequestStatus.APPROVED)
          .select_related("candidate_evaluation").order_by("-id").first())
    evaluation = cr.candidate_evaluation if cr is not None else None
    if evaluation is None or evaluation.status != EvaluationStatus.SUCCEEDED:
        return None
    return evaluation.score


def drift_subject(program: Program, *, actor: Any = None,
                  dataset: Dataset | None = None) -> tuple[PromptVersion, Dataset, float] | None:
    """(production version, dataset to check, baseline score) of a drift check: the newest fresh labeled dataset
    unless `dataset` is given. None when there is nothing to check: no production version, no baseline score,
    or no new labeled data. The job layer (governance.evaluator.run_drift_check) evaluates and then calls
    `judge_drift`."""
    if actor is not None:
        require_member(actor, program)
    version = production_version(program)
    baseline = baseline_score(version) if version is not None else None
    if version is None or baseline is None:
        return None
    if dataset is None:
        fresh = fresh_datasets(program, version)
        if not fresh:
            return None
        dataset = fresh[0]
    return version, dataset, baseline


def judge_drift(version: PromptVersion, dataset: Dataset, *, baseline: float, current: float,
                actor: Any = None) -> DriftCheck:
    """The check's outcome; an alert (audited, signalled on commit) when the drop exceeds the threshold."""
    threshold = version.program.drift_threshold
    check = DriftCheck(version, dataset, baseline, current, threshold, None)
    if check.drop_points > threshold:
        return DriftCheck(version, dataset, baseline, current, threshold, raise_alert(check, actor=actor))
    return check


@transaction.atomic
def raise_alert(check: DriftCheck, *, actor: Any) -> DriftAlert | None:
    """One alert per (version, dataset): a nightly check on the same data does not alert again."""
    program = Program.objects.select_for_update(no_key=True).get(pk=check.version.program_id)
    if DriftAlert.objects.filter(version=check.version, dataset=check.dataset).exists():
        return DriftAlert.objects.filter(version=check.version, dataset=check.dataset).first()
    alert = create(DriftAlert, by=actor, program=program, version=check.version, dataset=check.dataset,
                   baseline_score=check.baseline, current_score=check.current, threshold=check.threshold)
    record_event("drift.alert", actor=actor, obj=alert, program=program, after={
        "version": check.version.number, "content_hash": check.version.content_hash, "dataset": check.dataset.pk,
        "dataset_hash": check.dataset.content_hash, "baseline_score": check.baseline,
        "current_score": check.current, "drop_points": check.drop_points, "threshold": check.threshold},
        reason=f"production v{check.version.number} dropped {check.drop_points} points on {check.dataset.name}")
    send_on_commit(drift_alert_raised, DriftAlert, instance=alert)
    return alert
