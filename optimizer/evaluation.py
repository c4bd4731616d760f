"""Parallel evaluation that keeps every per-example result."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimizer.adapters import Adapter
from optimizer.data import Example
from optimizer.execution import Prediction, run_program
from optimizer.metrics import Metric
from optimizer.program import Program

if TYPE_CHECKING:
    from optimizer.lm import LM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleResult:
    index: int
    example: Example
    prediction: Prediction
    score: float
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "inputs": self.example.inputs, "expected": self.example.labels,
                "predicted": self.prediction.outputs, "score": self.score, "error": self.error,
                "raw": self.prediction.raw}


@dataclass(frozen=True)
class EvaluationResult:
    score: float
    results: tuple[ExampleResult, ...]

    @property
    def failures(self) -> list[ExampleResult]:
        return [r for r in self.results if r.score < 1.0]

    @property
    def error_count(self) -> int:
        return sum(1 for r in self.results if r.error)

    def to_dict(self, *, max_failures: int = 50) -> dict[str, Any]:
        return {"score": self.score, "examples": len(self.results), "errors": self.error_count,
                "failures": [r.to_dict() for r in self.failures[:max_failures]]}


def score_prediction(metric: Metric, example: Example, prediction: Prediction) -> tuple[float, str | None]:
    """Run the metric; a metric that raises scores 0 with its error recorded, never a crash."""
    try:
        return float(metric(example, prediction)), prediction.error
    except Exception as exc:  # noqa: BLE001 - user metrics may raise anything; the reason is kept
        logger.warning("metric raised on example: %s", exc)
        return 0.0, f"metric error: {type(exc).__name__}: {exc}"


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
    score, error = score_prediction(metric, example, prediction)
    return ExampleResult(index, example, prediction, score, error)
