"""Adapters: render a predictor call into an LM request and parse the answer back into typed fields.

Two formats share one "Prefix: value" line grammar:
- CompletionAdapter: plain text for base models with no chat template (the local Gemma 270M). The prompt
  ends with the first output prefix, so the model only has to continue it.
- ChatAdapter: system + user/assistant turns for chat models, with the same field lines inside.

Parsing never raises out of a prediction: a malformed answer becomes a ParseError that the caller records
as a failed prediction (scored by the metric, kept with its reason).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optimizer.errors import OptimizerError
from optimizer.program import Demo, Predictor
from optimizer.signatures import Field, Signature


class ParseError(OptimizerError):
    """The LM's answer could not be read into the signature's output fields."""


@dataclass(frozen=True)
class LMRequest:
    """What an adapter asks of the LM: a text prompt or chat messages, plus stop sequences."""

    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None  # a tighter cap than the LM's default when the answer is known to be short


def normalize_choice(text: str) -> str:
    """Case, whitespace, quotes and trailing punctuation do not matter when matching a choice."""
    return re.sub(r"\s+", " ", text.strip().strip("\"'`*").rstrip(".!,;:").strip()).lower()


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value).strip()


def parse_value(spec: Field, raw: str) -> Any:
    """Convert the raw text of one field to its declared type, or raise ParseError saying why."""
    text = raw.strip()
    if not text:
        raise ParseError(f"field {spec.name!r} is empty")
    if spec.type == "str":
        return text
    if spec.type == "choice":
        return _parse_choice(spec, text)
    if spec.type == "int":
        return _parse_number(spec, text, int)
    if spec.type == "float":
        return _parse_number(spec, text, float)
    if spec.type == "bool":
        return _parse_bool(spec, text)
    return _parse_list(text)


def _parse_choice(spec: Field, text: str) -> str:
    first_line = normalize_choice(text.splitlines()[0])
    for choice in spec.choices:
        if normalize_choice(choice) == first_line:
            return choice
    matched = _loose_choice(spec.choices, first_line)
    if matched is not None:
        return matched
    raise ParseError(f"{text.splitlines()[0][:80]!r} is not one of {', '.join(spec.choices)} (field {spec.name!r})")


def _separators_blind(text: str) -> str:
    return re.sub(r"[\s_\-/]+", " ", text).strip()


def _loose_choice(choices: Sequence[str], line: str) -> str | None:
    """The choice a small model meant when it wrote it loosely: "card arrival" for `card_arrival`, or the
    label followed by more words ("sports (the text is about football)"). Separators (space, _, -, /) are
    equivalent; a label that starts the line at a word boundary counts, the longest one when several do.
    Only an unambiguous reading is accepted: anything else stays a parse error (a wrong answer)."""
    blind = _separators_blind(line)
    by_form = {_separators_blind(normalize_choice(c)): c for c in choices}
    if blind in by_form:
        return by_form[blind]
    starts = [form for form in by_form if form and re.match(re.escape(form) + r"(\W|$)", blind)]
    return by_form[max(starts, key=len)] if starts else None


def _parse_number(spec: Field, text: str, kind: type) -> Any:
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    if not match:
        raise ParseError(f"field {spec.name!r}: no number in {text[:80]!r}")
    return kind(float(match.group())) if kind is int else kind(match.group())


def _parse_bool(spec: Field, text: str) -> bool:
    word = normalize_choice(text.split()[0])
    if word in {"true", "yes", "1"}:
        return True
    if word in {"false", "no", "0"}:
        return False
    raise ParseError(f"field {spec.name!r}: {text[:40]!r} is not true or false")


def _parse_list(text: str) -> list[str]:
    if text.startswith("["):
        try:
            value = json.loads(text)
            if isinstance(value, list):
                return [str(item) for item in value]
        except json.JSONDecodeError:
            pass
    lines = [line.strip().lstrip("-*").strip() for line in text.splitlines()]
    items = [line for line in lines if line]
    if len(items) == 1 and "," in items[0]:
        items = [part.strip() for part in items[0].split(",") if part.strip()]
    return items


def render_fields(fields: Sequence[Field], values: dict[str, Any]) -> str:
    return "\n".join(f"{f.prefix} {format_value(values[f.name])}" for f in fields if f.name in values)


def usable_demo(signature: Signature, demo: Demo) -> bool:
    """A demo shows the LM every input and at least the signature's final outputs."""
    return all(name in demo for name in signature.input_names) and \
        all(f.name in demo for f in signature.outputs if f.name != "reasoning")


def parse_fields(signature: Signature, answer: str) -> dict[str, Any]:
    """Read "Prefix: value" sections for the outputs; `answer` starts right after the first output prefix."""
    outputs = signature.outputs
    text = f"{outputs[0].prefix} {answer.lstrip()}"
    positions = _prefix_positions(outputs, text)
    values: dict[str, Any] = {}
    for i, spec in enumerate(outputs):
        if spec.name not in positions:
            raise ParseError(f"answer has no {spec.prefix!r} line (field {spec.name!r})")
        start = positions[spec.name] + len(spec.prefix)
        later = [positions[f.name] for f in outputs[i + 1:] if f.name in positions]
        value = _without_restated_prefix(spec, text[start:min(later)] if later else text[start:])
        values[spec.name] = parse_value(spec, value if later else _cut_invented_sequel(signature, value))
    return values


def _without_restated_prefix(spec: Field, text: str) -> str:
    """Models often restate a field's prefix before its value ("Category: billing" from a chat model, "\nAnswer:
    x" from a base model); the value is what follows it."""
    text = text.lstrip()
    return text[len(spec.prefix):] if text.lower().startswith(spec.prefix.lower()) else text


def _cut_invented_sequel(signature: Signature, text: str) -> str:
    """The last output's value ends at a line that repeats its prefix or starts an input: base models go on to
    invent further answers or examples ("x\nAnswer: y", "x\nQuestion: ...")."""
    prefixes = [signature.outputs[-1].prefix, *(f.prefix for f in signature.inputs)]
    match = re.search(r"\n\s*(?:" + "|".join(map(re.escape, prefixes)) + ")", text, flags=re.IGNORECASE)
    return text[:match.start()] if match else text


def _prefix_positions(outputs: Sequence[Field], text: str) -> dict[str, int]:
    positions: dict[str, int] = {}
    cursor = 0
    for spec in outputs:
        if cursor == 0 and spec is outputs[0]:
            positions[spec.name] = 0
            cursor = len(spec.prefix)
            continue
        match = re.search(r"(?:^|\n)\s*" + re.escape(spec.prefix), text[cursor:], flags=re.IGNORECASE)
        if match:
            positions[spec.name] = cursor + match.end() - len(spec.prefix)
            cursor = positions[spec.name] + len(spec.prefix)
    return positions


class Adapter(ABC):
    """Renders a predictor call and parses the LM's answer."""

    name: str = "adapter"

    @abstractmethod
    def format(self, predictor: Predictor, inputs: dict[str, Any]) -> LMRequest:
        """Build the request for one call of `predictor` on `inputs`."""

    def parse(self, predictor: Predictor, answer: str) -> dict[str, Any]:
        return parse_fields(predictor.rendered_signature, answer)

    @staticmethod
    def stop_sequences(signature: Signature) -> tuple[str, ...]:
        # A blank line or the next example's first input ends the answer; base models otherwise ramble on.
        if _single_line_answer(signature):
            return ("\n",)
        # Not the output's own prefix: base models often open with "\nAnswer: x", which that stop would cut to
        # nothing; the parser ends the value at a repeated prefix instead.
        return ("\n\n", f"\n{signature.inputs[0].prefix}")

    @staticmethod
    def answer_token_cap(signature: Signature) -> int | None:
        """A closed set of short choices needs a few tokens, not the LM's default allowance."""
        if _single_line_answer(signature):
            longest = max(len(c) for c in signature.outputs[0].choices)
            return max(8, longest // 2 + 6)
        return None


def _single_line_answer(signature: Signature) -> bool:
    return len(signature.outputs) == 1 and signature.outputs[0].type == "choice"


class CompletionAdapter(Adapter):
    """Plain "Field: value" text for base models: instructions, demos, then the query to continue."""

    name = "completion"

    def format(self, predictor: Predictor, inputs: dict[str, Any]) -> LMRequest:
        signature = predictor.rendered_signature
        blocks = [signature.instructions.strip()]
        blocks += [render_fields(signature.fields, demo) for demo in predictor.demos if usable_demo(signature, demo)]
        query = render_fields(signature.inputs, inputs)
        blocks.append(f"{query}\n{signature.outputs[0].prefix}")
        return LMRequest(prompt="\n\n".join(b for b in blocks if b), stop=self.stop_sequences(signature),
                         max_tokens=self.answer_token_cap(signature))


class ChatAdapter(Adapter):
    """Chat turns for instruction-tuned models: a system message describing the fields, one turn per demo."""

    name = "chat"

    def format(self, predictor: Predictor, inputs: dict[str, Any]) -> LMRequest:
        signature = predictor.rendered_signature
        messages = [{"role": "system", "content": self._system(signature)}]
        for demo in predictor.demos:
            if usable_demo(signature, demo):
                messages.append({"role": "user", "content": render_fields(signature.inputs, demo)})
                messages.append({"role": "assistant", "content": render_fields(signature.outputs, demo)})
        messages.append({"role": "user", "content": render_fields(signature.inputs, inputs)})
        return LMRequest(messages=tuple(messages))

    @staticmethod
    def _system(signature: Signature) -> str:
        lines = [signature.instructions.strip(), "", "Input fields:"]
        lines += [f"- {f.prefix} {f.description}".rstrip() for f in signature.inputs]
        lines += ["", "Answer with exactly these lines, in this order:"]
        for f in signature.outputs:
            hint = f" (one of: {', '.join(f.choices)})" if f.choices else f" ({f.type})" if f.type != "str" else ""
            lines.append(f"{f.prefix} <{f.description or f.name}>{hint}")
        return "\n".join(lines)



def adapter_for(is_chat: bool) -> Adapter:
    return ChatAdapter() if is_chat else CompletionAdapter()
