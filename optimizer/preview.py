"""What each predictor sends: the adapter's own rendering, for people to read before and after a call.

`render_prompts` previews a program on an input without calling any model (a later predictor's inputs that an
earlier one would produce show as placeholders); `run_with_prompts` runs it and pairs each predictor's request
with the LM's raw answer and the parsed fields. Both render through the same `Adapter.format` the optimizer and
evaluations call, so what a person reads is byte for byte what the model receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimizer.adapters import Adapter, adapter_for
from optimizer.execution import Prediction, run_program
from optimizer.program import Predictor, ProgramSpec

if TYPE_CHECKING:
    from optimizer.lm import LM


@dataclass(frozen=True)
class RenderedPrompt:
    """One predictor's request: a completion prompt or chat messages, with its stop sequences and token cap."""

    predictor: str
    mode: str  # "completion" or "chat"
    prompt: str | None
    messages: tuple[dict[str, str], ...] | None
    stop: tuple[str, ...]
    max_tokens: int | None

    def as_text(self) -> str:
        """The request as one readable text: the prompt itself, or each message under its role."""
        if self.prompt is not None:
            return self.prompt
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages or ())


@dataclass(frozen=True)
class PredictorCall:
    """One predictor's part of a run: what was sent, the raw answer, the parsed fields, or why it failed."""

    request: RenderedPrompt
    raw: str
    outputs: dict[str, Any]
    error: str | None = None


def render_prompt(predictor: Predictor, inputs: dict[str, Any], *, chat: bool) -> RenderedPrompt:
    """The request `predictor` sends for `inputs` to a chat (`chat=True`) or a completion model."""
    adapter = adapter_for(chat)
    return _rendered(predictor, adapter.format(predictor, inputs), adapter)


def _rendered(predictor: Predictor, request: Any, adapter: Adapter) -> RenderedPrompt:
    return RenderedPrompt(predictor=predictor.name, mode=adapter.name, prompt=request.prompt,
                          messages=request.messages, stop=request.stop, max_tokens=request.max_tokens)


def render_prompts(program: ProgramSpec, inputs: dict[str, Any], *, chat: bool) -> list[RenderedPrompt]:
    """Every predictor's request for `inputs`, without calling a model. An input that an earlier predictor
    produces (or that `inputs` lacks) is shown as a placeholder such as ``<category from classify>``."""
    produced_by: dict[str, str] = {}
    prompts = []
    for predictor in program.predictors:
        values = {name: inputs[name] if name in inputs else _placeholder(name, produced_by)
                  for name in predictor.signature.input_names}
        prompts.append(render_prompt(predictor, values, chat=chat))
        for name in predictor.rendered_signature.output_names:
            produced_by.setdefault(name, predictor.name)
    return prompts


def _placeholder(name: str, produced_by: dict[str, str]) -> str:
    source = produced_by.get(name)
    return f"<{name} from {source}>" if source else f"<{name}>"


def run_with_prompts(program: ProgramSpec, inputs: dict[str, Any], lm: LM) -> tuple[Prediction, list[PredictorCall]]:
    """Run `program` on `inputs` (through `run_program`) and account for each predictor that was called.

    The list ends at the predictor that failed, if one did; a predictor never reached is not in it.
    """
    prediction = run_program(program, inputs, lm)
    state = dict(inputs)
    calls = []
    for index, predictor in enumerate(program.predictors):
        failed = index == len(prediction.trace)
        if failed and (prediction.ok or prediction.error_kind == "input"):
            break  # nothing was sent for this predictor
        step_inputs = {name: state[name] for name in predictor.signature.input_names if name in state}
        request = render_prompt(predictor, step_inputs, chat=lm.is_chat)
        if failed:
            raw = prediction.raw if prediction.error_kind == "parse" else ""  # an LM error left no answer
            calls.append(PredictorCall(request, raw, {}, prediction.error))
            break
        step = prediction.trace[index]
        calls.append(PredictorCall(request, step.raw, dict(step.outputs)))
        state.update(step.outputs)
    return prediction, calls
