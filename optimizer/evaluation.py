"""Parallel evaluation that keeps every per-example result.

An example whose LM call failed still scores 0 (the mean stays comparable across runs), but it is counted apart:
`EvaluationResult.lm_errors` against `parse_errors` (answers the model gave in the wrong shape) and
`metric_errors`. After `LMConfig.max_consecutive_failures` failed calls in a row the evaluation raises
`ModelFailing` instead of scoring a dead endpoint as a run of wrong answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optimizer.adapters import Adapter
from optimizer.data import Example
from optimizer.errors import RUN_ENDING_ERRORS
from optimizer.execution import LM_ERROR, PARSE_ERROR, Prediction, run_program
from optimizer.judge import Judgement
from optimizer.metrics import Metric
from optimizer.program import Program

if TYPE_CHECKING:
    from optimizer.lm import LM

logger = logging.getLogger(__name__)


METRIC_ERROR = "metric"


@dataclass(frozen=True)
class ExampleResult:
    index: int
    example: Example
    prediction: Prediction
    score: float
    error: str | None
    feedback: dict[str, str] = field(default_factory=dict)  # what the metric said beyond the score (a judge's)

    @property
    def error_kind(self) -> str | None:
        """"lm", "parse", "input" (the prediction's), "metric" (the metric raised) or None."""
        if self.prediction.error_kind is not None:
            return self.prediction.error_kind
        return METRIC_ERROR if self.error else None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "inputs": self.example.inputs, "expected": self.example.labels,
                "predicted": self.prediction.outputs, "score": self.score, "error": self.error,
                "error_kind": self.error_kind, "raw": self.prediction.raw, "feedback": self.feedback}


@dataclass(frozen=True)
class EvaluationResult:
    score: float
    results: tuple[ExampleResult, ...]

    @property
    def failures(self) -> list[ExampleResult]:
        return [r for r in self.results if r.score < 1.0]

    @property
    def error_count(self) -> int:
        """Examples that failed for any reason (LM, parse, input or metric error); see the counts by kind."""
        return sum(1 for r in self.results if r.error)

    @property
    def lm_errors(self) -> int:
        """Examples with no answer because an LM call failed: errors, not wrong answers."""
        return sum(1 for r in self.results if r.error_kind == LM_ERROR)

    @property
    def parse_errors(self) -> int:
        """Examples the model answered in a shape the signature does not accept."""
        return sum(1 for r in self.results if r.error_kind == PARSE_ERROR)

    @property
    def metric_errors(self) -> int:
        return sum(1 for r in self.results if r.error_kind == METRIC_ERROR)

    def to_dict(self, *, max_failures: int = 50) -> dict[str, Any]:
        return {"score": self.score, "examples": len(self.results), "errors": self.error_count,
                "lm_errors": self.lm_errors, "parse_errors": self.parse_errors,
                "failures": [r.to_dict() for r in self.failures[:max_failures]]}


@dataclass(frozen=True)
class MetricOutcome:
    """One metric call: the score, the error (the prediction's or the metric's) and the metric's feedback."""

    score: float
    error: str | None
    feedback: dict[str, str]


def run_metric(metric: Metric, example: Example, prediction: Prediction) -> MetricOutcome:
    """Run the metric; a metric that raises scores 0 with its error recorded, never a crash, except for the
    errors that end a run (RUN_ENDING_ERRORS: a judge's budget, a stop, an unreachable judge). A metric that
    explains itself (returns a `Judgement`) leaves its verdict and reason in `feedback`."""
    try:
        value = metric(example, prediction)
        score = float(value)
    except RUN_ENDING_ERRORS:
        raise  # a judge out of budget, stopped or unreachable ends the evaluation: never a silent 0
    except Exception as exc:  # noqa: BLE001 - user metrics may raise anything; the reason is kept
        logger.warning("metric raised on example: %s", exc)
        return MetricOutcome(0.0, f"metric error: {type(exc).__name__}: {exc}", {})
    feedback = value.to_dict() if isinstance(value, Judgement) else {}
    return MetricOutcome(score, prediction.error, feedback)


def score_prediction(metric: Metric, example: Example, prediction: Prediction) -> tuple[float, str | None]:
    """The metric's score and the error, if any (see `run_metric`)."""
    outcome = run_metric(metric, example, prediction)
    return outcome.score, outcome.error


def evaluate(program: Program, examples: Sequence[Example], metric: Metric, lm: LM,
             adapter: Adapter | None = None) -> EvaluationResult:
    """Score `program` on every example in parallel (the LM's thread pool bounds concurrency)."""

    def one(item: tuple[int, Example]) -> ExampleResult:
        index, example = item
        return evaluate_example(program, example, metric, lm, adapter, index=index)

    results = lm.map(one, list(enumerate(examples)))
    mean = sum(r.score for r in results) / len(results) if results else 0.0
    return EvaluationResult(mean, tuple(results))


def evaluate_example(program: Program, example: Example, metric: Metric, lm: LM, adapter: Adapter | None = None,
                     *, index: int = 0) -> ExampleResult:
    """Run and score one example (the unit the search streams through its own window of calls)."""
    prediction = run_program(program, example.inputs, lm, adapter)
    outcome = run_metric(metric, example, prediction)
    return ExampleResult(index, example, prediction, outcome.score, outcome.error, outcome.feedback)
