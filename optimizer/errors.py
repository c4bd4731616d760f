"""The optimizer's exception hierarchy: every error a caller may want to catch has a type of its own."""

from __future__ import annotations


class OptimizerError(Exception):
    """Base class of every error raised on purpose by the optimizer package."""


class SpecError(OptimizerError, ValueError):
    """A signature, field or program description is invalid (unknown type, duplicate name, ...)."""


class SignatureHintError(SpecError):
    """A DSPy file's predictor needs the signature dspy did not save (which fields are inputs), or the one given
    for it (``program_from_dspy(signatures=...)``) does not fit the file. `predictor` is the name a signature is
    given under ("" when the given names themselves are wrong)."""

    def __init__(self, message: str, *, predictor: str = "") -> None:
        super().__init__(message)
        self.predictor = predictor


class DataError(OptimizerError, ValueError):
    """A data file or example is invalid; the message names the file and row."""


class MetricError(OptimizerError, ValueError):
    """A metric name or `module:function` reference cannot be resolved."""


class LMError(OptimizerError):
    """A language-model call failed after its retries."""


class LMUnreachableError(LMError):
    """The model endpoint refused the connection or is not configured."""


class ModelFailing(LMUnreachableError):
    """The model failed `failures` calls in a row (`LMConfig.max_consecutive_failures`): a dead endpoint, a
    revoked key, prompts it refuses. The run stops instead of scoring every later answer as wrong.

    A subclass of LMUnreachableError, so everything that ends a run on an unreachable model ends it on this too.
    """

    def __init__(self, model: str, failures: int, last_error: BaseException) -> None:
        super().__init__(f"model {model} failed {failures} calls in a row; last error: {last_error}")
        self.model = model
        self.failures = failures
        self.last_error = last_error


class BudgetExceeded(OptimizerError):
    """A hard budget cap (calls, tokens, USD) was reached; the search stops cleanly on it."""

    def __init__(self, resource: str, limit: float, used: float) -> None:
        super().__init__(f"budget exhausted: {resource} limit {limit:g} reached (used {used:g})")
        self.resource = resource
        self.limit = limit
        self.used = used


class BundleError(OptimizerError):
    """An export bundle failed verification (bad signature, hash mismatch, malformed)."""


class StopRequested(OptimizerError):
    """Raised from a progress callback to ask the search to stop at the next trial boundary."""


# Errors that end a whole run or evaluation, never one example: raised from a program's LM or a metric's own
# (an LM judge's), they propagate instead of being scored as that example's wrong answer.
RUN_ENDING_ERRORS = (BudgetExceeded, StopRequested, LMUnreachableError)
