"""Running a program: each predictor in order, later ones reading earlier outputs.

A failure (unparseable answer, LM error after retries) ends that example's run with the reason kept and its
kind (`Prediction.error_kind`), so an LM failure is counted as an error, never mistaken for a wrong answer.
BudgetExceeded, StopRequested and LMUnreachableError (ModelFailing included) escape, because they end the whole
search rather than one example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from optimizer.adapters import Adapter, ParseError, adapter_for
from optimizer.errors import RUN_ENDING_ERRORS, LMError
from optimizer.program import Predictor, Program

if TYPE_CHECKING:
    from optimizer.lm import LM


@dataclass(frozen=True)
class TraceStep:
    """One predictor call inside a program run: what it read and what it produced."""

    predictor: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    raw: str = ""  # the LM's answer text the outputs were parsed from


LM_ERROR = "lm"        # the model call failed (after its retries): no answer at all
PARSE_ERROR = "parse"  # the model answered, but not in the signature's fields or types
INPUT_ERROR = "input"  # the program lacked an input a predictor reads
ErrorKind = Literal["lm", "parse", "input"]


@dataclass(frozen=True)
class Prediction:
    """The outcome of running a program on one input; `error` is set when it failed, `error_kind` says how."""

    outputs: dict[str, Any] = field(default_factory=dict)
    trace: tuple[TraceStep, ...] = ()
    error: str | None = None
    raw: str = ""
    error_kind: ErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def get(self, name: str, default: Any = None) -> Any:
        return self.outputs.get(name, default)


def call_predictor(predictor: Predictor, inputs: dict[str, Any], lm: LM, adapter: Adapter) -> str:
    """One LM call; returns the raw answer text. Raises LMError."""
    request = adapter.format(predictor, inputs)
    if request.messages is not None:
        response = lm.chat(list(request.messages), stop=list(request.stop) or None, max_tokens=request.max_tokens)
    else:
        response = lm.complete(request.prompt or "", stop=list(request.stop) or None, max_tokens=request.max_tokens)
    return response.text


def run_program(program: Program, inputs: dict[str, Any], lm: LM, adapter: Adapter | None = None) -> Prediction:
    """Run every predictor in order; the returned outputs hold every field produced along the way."""
    adapter = adapter or adapter_for(lm.is_chat)
    state = dict(inputs)
    trace: list[TraceStep] = []
    raw = ""
    for predictor in program.predictors:
        step_inputs = {name: state[name] for name in predictor.signature.input_names if name in state}
        missing = [n for n in predictor.signature.input_names if n not in state]
        if missing:
            return Prediction(_produced(state, inputs), tuple(trace), f"{predictor.name}: missing input(s) "
                                                                      f"{', '.join(missing)}", raw, INPUT_ERROR)
        try:
            raw = call_predictor(predictor, step_inputs, lm, adapter)
            outputs = adapter.parse(predictor, raw)
        except RUN_ENDING_ERRORS:
            raise  # these end the whole run, not one example
        except ParseError as exc:
            return Prediction(_produced(state, inputs), tuple(trace), f"{predictor.name}: {exc}", raw, PARSE_ERROR)
        except LMError as exc:
            return Prediction(_produced(state, inputs), tuple(trace), f"{predictor.name}: LM error: {exc}", raw,
                              LM_ERROR)
        trace.append(TraceStep(predictor.name, step_inputs, outputs, raw))
        state.update(outputs)
    return Prediction(_produced(state, inputs), tuple(trace), None, raw)


def _produced(state: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in inputs}
