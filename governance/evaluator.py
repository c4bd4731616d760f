"""Executes system evaluations: a Celery worker, the local pool, or inline as a run's final evaluation.

The evaluator walks the dataset in small chunks so that progress is visible, a cancel stops it within a chunk
(the LM also refuses further calls once a stop is requested), and the run's budget bounds it to the call.
A failed LM call is an error on its example, counted on the evaluation and shown to reviewers, never a silent
wrong answer; a model that fails call after call trips the guard and fails the evaluation.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from governance.actions import evaluations as evaluation_actions
from governance.actions import datasets as dataset_actions
from governance.actions import monitoring
from governance.actions import reviews as review_actions
from governance.errors import GovernanceError
from governance.models import Dataset, Evaluation, EvaluationStatus, Program, PromptVersion
from governance import jobs
from governance.jobs import guarded_lm, guarded_metric, lm_config_from, local_executor, worker_name
from governance.signals import evaluation_requested
from optimizer import (
    ExampleResult,
    Metric,
    ProgramSpec,
    StopRequested,
    Usage,
    evaluate_example,
    examples_from_records,
    metric_usage,
    resolve_metric,
)

logger = logging.getLogger(__name__)

CHUNK = 8  # examples per progress update and stop check
ProgressCallback = Callable[[int, int, Usage], None]


@receiver(evaluation_requested)
def _on_requested(sender: Any, evaluation_id: int, **kwargs: Any) -> None:
    dispatch_evaluation(evaluation_id)  # looked up at call time: tests replace dispatch_evaluation


def dispatch_evaluation(evaluation_id: int) -> None:
    """Hand a queued evaluation to Celery, or to the local pool when no broker is configured (on commit)."""
    jobs.enqueue("governance.tasks.run_evaluation", evaluation_id, key=_pool_key(evaluation_id),
                 local=lambda: execute_evaluation(evaluation_id, worker=worker_name("local-eval")))


def redispatch_waiting(queued_after: float) -> list[int]:
    """Send again the job of every evaluation queued for longer than `queued_after` seconds (its message may be
    lost: a broker restarted without persistence, a local pool gone with its process). A duplicate is harmless:
    claiming is atomic, so exactly one executor runs it."""
    since = timezone.now() - timedelta(seconds=queued_after)
    waiting = list(Evaluation.objects.filter(status=EvaluationStatus.QUEUED, created_at__lt=since, run__isnull=True)
                   .values_list("pk", flat=True))
    for evaluation_id in waiting:
        dispatch_evaluation(evaluation_id)
    return waiting


def _pool_key(evaluation_id: int) -> str:
    return f"evaluation-{evaluation_id}"


def execute_evaluation(evaluation_id: int, *, worker: str) -> str:
    """Claim and run a queued evaluation with its own LM. Returns its final status, or why it was skipped."""
    evaluation = evaluation_actions.claim_evaluation(evaluation_id, worker=worker)
    if evaluation is None:
        return "skipped: not queued"
    with guarded_lm(lm_config_from(evaluation.lm_config)) as lm:
        try:
            return run_claimed(evaluation, lm).status
        except Exception as exc:  # recorded on the evaluation by run_claimed; a job has nobody to raise to
            return f"{EvaluationStatus.FAILED}: {type(exc).__name__}: {exc}"


def evaluate_now(evaluation: Evaluation, *, timeout: float = 3600) -> Evaluation:
    """The evaluation finished, here if nobody runs it yet (scheduled jobs such as the drift check)."""
    finish_pending([evaluation], timeout=timeout)
    deadline = time.monotonic() + timeout
    evaluation.refresh_from_db()
    while not evaluation.is_finished and time.monotonic() < deadline:  # another worker has it: wait for it
        time.sleep(1.0)
        evaluation.refresh_from_db()
    return evaluation


def finish_pending(evaluations: list[Evaluation], *, timeout: float = 300) -> None:
    """Finish evaluations now (CLI, demo, tests): wait for those already handed to the local pool, then run the
    ones still queued here (no job was dispatched for them, e.g. inside a transaction that has not committed)."""
    for evaluation in evaluations:
        local_executor().wait(_pool_key(evaluation.pk), timeout=timeout)
    for evaluation in evaluations:
        execute_evaluation(evaluation.pk, worker=worker_name("inline-eval"))


class Spending:
    """What an evaluation has spent since it started: its LM's calls, plus those of a metric with an LM of its own
    (an LM judge), so an evaluation judged by a model reports the judge's calls, tokens and cost too."""

    def __init__(self, lm: Any) -> None:
        self.lm, self.metric = lm, None
        self.before = lm.usage()

    def watch(self, metric: Metric) -> Metric:
        self.metric = metric
        self.before = self.before + metric_usage(metric)
        return metric

    def __call__(self) -> Usage:
        judge = metric_usage(self.metric) if self.metric is not None else Usage.zero()
        return self.lm.usage() + judge - self.before


def run_claimed(evaluation: Evaluation, lm: Any, *, on_progress: ProgressCallback | None = None,
                spending: Spending | None = None) -> Evaluation:
    """Evaluate a running evaluation with `lm` and record the outcome. `spending` (a `Spending(lm)`) lets the
    caller read what it spent, a judge's calls included, however it ends.

    BudgetExceeded, StopRequested and a tripped model guard fail (or cancel) the evaluation and are re-raised:
    they end whatever job the evaluation is part of. Any other error fails it and is re-raised too.
    """
    started, spent = time.monotonic(), spending or Spending(lm)
    try:
        metric = spent.watch(guarded_metric(resolve_metric(evaluation.metric), lm))
        outcomes = _outcomes(evaluation, lm, metric, spent, on_progress)
    except StopRequested as exc:
        _end(evaluation, spent(), started, f"cancelled: {exc}", cancelled=True)
        raise
    except Exception as exc:
        _end(evaluation, spent(), started, f"{type(exc).__name__}: {exc}")
        raise
    # One transaction: nobody sees both evaluations succeeded without the comparison. Each finisher updates its
    # evaluation before it locks the change request, so whichever takes that lock second reads the other's
    # committed status and records the comparison (two workers finishing together cannot both miss it).
    with transaction.atomic():
        completed = evaluation_actions.complete_evaluation(evaluation, outcomes=outcomes, usage=spent(),
                                                           seconds=time.monotonic() - started)
        review_actions.record_comparisons(completed)
    return completed


def _outcomes(evaluation: Evaluation, lm: Any, metric: Metric, spending: Spending,
              on_progress: ProgressCallback | None) -> list[evaluation_actions.ExampleOutcome]:
    program = ProgramSpec.from_dict(evaluation.payload["program"])
    dataset = evaluation.dataset
    examples = examples_from_records(dataset_actions.examples_for(dataset), program, source=f"dataset {dataset.name}")
    items = list(enumerate(examples))
    outcomes: list[evaluation_actions.ExampleOutcome] = []
    for start in range(0, len(items), CHUNK):
        results = lm.map(lambda item: evaluate_example(program, item[1], metric, lm, index=item[0]),
                         items[start:start + CHUNK])
        outcomes += [_outcome(result) for result in results]
        spent = spending()
        evaluation_actions.record_evaluation_progress(evaluation.pk, done=len(outcomes), usage=spent)
        if on_progress is not None:
            on_progress(len(outcomes), len(items), spent)
    return outcomes


def _outcome(result: ExampleResult) -> evaluation_actions.ExampleOutcome:
    prediction = result.prediction
    return evaluation_actions.ExampleOutcome(index=result.index, predicted=dict(prediction.outputs),
                                             raw=prediction.raw or "", score=float(result.score),
                                             error=result.error or "", feedback=result.feedback or None)


def _end(evaluation: Evaluation, spent: Usage, started: float, error: str, *, cancelled: bool = False) -> None:
    logger.warning("evaluation %s ended without a score: %s", evaluation.pk, error)
    evaluation_actions.fail_evaluation(evaluation, error=error, usage=spent, seconds=time.monotonic() - started,
                                       cancelled=cancelled)


# --- drift check: a scheduled job that evaluates the production version on new labeled data ------------------


def run_drift_check(program: Program, *, actor: Any = None,
                    dataset: Dataset | None = None) -> monitoring.DriftCheck | None:
    """Re-evaluate the production version on the newest fresh labeled dataset (or `dataset`); None when there is
    nothing to check (see governance.actions.monitoring.drift_subject)."""
    subject = monitoring.drift_subject(program, actor=actor, dataset=dataset)
    if subject is None:
        return None
    version, dataset, baseline = subject
    return monitoring.judge_drift(version, dataset, baseline=baseline, current=score_version(version, dataset),
                                  actor=actor)


def score_version(version: PromptVersion, dataset: Dataset) -> float:
    """A system evaluation of the version's frozen content on `dataset`, with the model it was approved for
    (reused when the same content, data and model were evaluated before). A broken endpoint fails the check
    instead of scoring zero and raising a false alert."""
    evaluation = evaluate_now(evaluation_actions.request_evaluation(version.program, version.payload, dataset,
                                                                    actor=None, announce=False))
    if evaluation.status != EvaluationStatus.SUCCEEDED:
        raise GovernanceError(f"drift check of {version.program.slug} v{version.number} on dataset "
                              f"{dataset.pk}: evaluation {evaluation.pk} {evaluation.status}: {evaluation.error}")
    return evaluation.score or 0.0
