"""optimizer: a MIPRO prompt optimizer on optuna + litellm. Pure Python; never imports Django.

The public API is re-exported here; submodules are implementation detail unless named below. Heavy
dependencies (litellm, optuna, llama-cpp) load lazily, on first use.
"""

from optimizer.checks import Finding, check_candidate
from optimizer.data import Example, examples_from_records, load_examples
from optimizer.errors import (
    BudgetExceeded,
    BundleError,
    DataError,
    LMError,
    LMUnreachableError,
    MetricError,
    OptimizerError,
    SpecError,
    StopRequested,
)
from optimizer.evaluation import EvaluationResult, ExampleResult, evaluate
from optimizer.execution import Prediction, run_program
from optimizer.lm import LM, Budget, LMConfig, Usage
from optimizer.metrics import choice_match, exact_match, resolve_metric, token_f1
from optimizer.program import ChainOfThought, Predict, Predictor, Program, canonical_json, content_hash
from optimizer.search import MIPRO, PRESETS, MIPROConfig, RunResult, TrialRecord
from optimizer.signatures import Field, Signature
from optimizer.stats import PairedComparison, compare_paired

__all__ = [
    "LM",
    "MIPRO",
    "PRESETS",
    "Budget",
    "BudgetExceeded",
    "BundleError",
    "ChainOfThought",
    "DataError",
    "EvaluationResult",
    "Example",
    "ExampleResult",
    "Field",
    "Finding",
    "LMConfig",
    "LMError",
    "LMUnreachableError",
    "MIPROConfig",
    "MetricError",
    "OptimizerError",
    "Predict",
    "PairedComparison",
    "Prediction",
    "Predictor",
    "Program",
    "RunResult",
    "Signature",
    "SpecError",
    "StopRequested",
    "TrialRecord",
    "Usage",
    "canonical_json",
    "check_candidate",
    "choice_match",
    "compare_paired",
    "content_hash",
    "evaluate",
    "exact_match",
    "examples_from_records",
    "load_examples",
    "resolve_metric",
    "run_program",
    "token_f1",
]
