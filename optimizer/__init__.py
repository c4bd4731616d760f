"""optimizer: a MIPRO prompt optimizer on optuna + litellm. Pure Python; never imports Django.

The public API is re-exported here, and it is everything the Django app (governance/) uses: submodules are
implementation detail (a governance test refuses `from optimizer.<module> import ...`). Heavy dependencies
(litellm, optuna, llama-cpp) load lazily, on first use; so do the bundle and DSPy-state functions (cryptography,
importlib.metadata), through the module-level `__getattr__` below. The optimizer's program class is `ProgramSpec`;
`Program` is a deprecated alias of it.
"""

import importlib
from typing import Any

from optimizer.checks import Finding, check_candidate
from optimizer.data import Example, examples_from_records, load_examples, split_train_val
from optimizer.errors import (
    BudgetExceeded,
    BundleError,
    DataError,
    LMError,
    LMUnreachableError,
    MetricError,
    OptimizerError,
    SignatureHintError,
    SpecError,
    StopRequested,
)
from optimizer.evaluation import EvaluationResult, ExampleResult, evaluate, evaluate_example
from optimizer.execution import Prediction, run_program
from optimizer.judge import JudgeMetric, Judgement, parse_judgement
from optimizer.lm import LM, Budget, LMConfig, SharedBudget, Usage
from optimizer.metrics import (
    Metric,
    choice_match,
    exact_match,
    metric_names,
    metric_calls_per_example,
    metric_spending_from,
    metric_usage,
    resolve_metric,
    token_f1,
)
from optimizer.preview import PredictorCall, RenderedPrompt, render_prompt, render_prompts, run_with_prompts
from optimizer.program import ChainOfThought, Predict, Predictor, Program, ProgramSpec, canonical_json, content_hash
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
    "JudgeMetric",
    "Judgement",
    "LMConfig",
    "LMError",
    "LMUnreachableError",
    "MIPROConfig",
    "MetricError",
    "OptimizerError",
    "Predict",
    "PairedComparison",
    "Metric",
    "Prediction",
    "Predictor",
    "PredictorCall",
    "Program",
    "ProgramSpec",
    "RenderedPrompt",
    "RunResult",
    "SharedBudget",
    "Signature",
    "SignatureHintError",
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
    "evaluate_example",
    "exact_match",
    "examples_from_records",
    "load_examples",
    "render_prompt",
    "render_prompts",
    "metric_names",
    "metric_calls_per_example",
    "metric_spending_from",
    "metric_usage",
    "parse_judgement",
    "resolve_metric",
    "run_program",
    "run_with_prompts",
    "split_train_val",
    "token_f1",
]

# Loaded on first use: signed bundles need cryptography, DSPy states importlib.metadata (a tenth of a second).
_LAZY = {name: "optimizer.bundle" for name in (
    "dumps_bundle", "generate_private_key", "key_fingerprint", "load_bundle", "load_private_key", "parse_public_key",
    "private_key_pem", "public_key_b64", "public_key_raw", "sign_bundle", "verify_bundle")}
_LAZY.update({name: "optimizer.dspy_compat" for name in (
    "DSPyImport", "dumps_dspy_state", "export_dspy_state", "import_dspy_state", "parse_dspy_json",
    "program_from_dspy", "read_dspy_bytes", "read_dspy_file", "resolve_layout", "to_dspy_state")})
__all__ += sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'optimizer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
