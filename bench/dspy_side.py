"""DSPy 3.4.1 wiring for the comparison: a completion-prompt adapter, a raw-prompt text LM, a program built
from one of our specs, and a trial-log hook.

Why an adapter: DSPy's ChatAdapter cannot drive the Gemma 3 270M base model (its answers miss the
``[[ ## field ## ]]`` markers, the JSON fallback sends ``response_format`` to the completion endpoint and the
run crashes; see ../shared/MIPRO.md). `FieldAdapter` renders exactly the prompt our CompletionAdapter renders:
the instructions, one "Prefix: value" block per demo, then the query ending in the first output prefix,
blocks separated by a blank line. The answer's first line is the label.

Why a dspy.LM subclass: with ``model_type="text"`` dspy 3.4.1 routes to ``litellm_text_completion``
(dspy/clients/lm.py), which joins the messages and appends ``"\\n\\nBEGIN RESPONSE:"`` to every prompt, so the
prompt would no longer end in "Label:". `RawTextLM` overrides ``forward`` to send the adapter's prompt
verbatim through ``litellm.text_completion`` (same model string and api_base as our optimizer uses).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Literal

import dspy

from optimizer.adapters import format_value, normalize_choice

class RawTextLM(dspy.LM):
    """dspy.LM whose forward sends the prompt as is to an OpenAI-compatible /v1/completions endpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self._count_lock = threading.Lock()

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        import litellm

        text = prompt if isinstance(prompt, str) else "\n\n".join(str(m["content"]) for m in messages or [])
        merged = {**self.kwargs, **kwargs}
        for key in ("rollout_id", "n", "num_retries", "cache"):
            merged.pop(key, None)
        with self._count_lock:
            self.calls += 1
        return litellm.text_completion(model=self.model, prompt=text, num_retries=self.num_retries, **merged)


def _prefix(field: Any, name: str) -> str:
    extra = getattr(field, "json_schema_extra", None) or {}
    return str(extra.get("prefix") or f"{name.replace('_', ' ').title()}:")


def _choices(field: Any) -> tuple[str, ...] | None:
    annotation = getattr(field, "annotation", None)
    if getattr(annotation, "__origin__", None) is Literal:
        return tuple(str(c) for c in annotation.__args__)
    return None


def _as_dict(demo: Any) -> dict[str, Any]:
    if hasattr(demo, "toDict"):
        return dict(demo.toDict())
    return dict(demo)


class FieldAdapter(dspy.Adapter):
    """Plain "Field: value" completion prompts, identical to optimizer.adapters.CompletionAdapter."""

    def render(self, signature: Any, demos: list[Any], inputs: dict[str, Any]) -> str:
        ins, outs = signature.input_fields, signature.output_fields
        blocks = [signature.instructions.strip()]
        for demo in demos:
            values = _as_dict(demo)
            if all(values.get(n) not in (None, "") for n in list(ins) + list(outs)):
                blocks.append("\n".join(f"{_prefix(f, n)} {format_value(values[n])}"
                                        for n, f in [*ins.items(), *outs.items()]))
        query = "\n".join(f"{_prefix(f, n)} {format_value(inputs[n])}" for n, f in ins.items() if n in inputs)
        first_name, first_field = next(iter(outs.items()))
        blocks.append(f"{query}\n{_prefix(first_field, first_name)}")
        return "\n\n".join(b for b in blocks if b)

    def format(self, signature: Any, demos: list[Any], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": self.render(signature, demos, inputs)}]

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list[Any],
                 inputs: dict[str, Any]) -> list[dict[str, Any]]:
        prompt = self.render(signature, demos, inputs)
        kwargs = dict(lm_kwargs)
        outs = signature.output_fields
        first = next(iter(outs.values()))
        choices = _choices(first)
        if len(outs) == 1 and choices:
            kwargs["stop"] = ["\n"]
            kwargs["max_tokens"] = max(8, max(len(c) for c in choices) // 2 + 6)
        else:
            first_input = next(iter(signature.input_fields.items()))
            kwargs["stop"] = ["\n\n", f"\n{_prefix(first_input[1], first_input[0])}"]
        outputs = lm(prompt=prompt, **kwargs)
        return [self.parse(signature, o.get("text", "") if isinstance(o, dict) else str(o)) for o in outputs]

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        """Sections by output prefix; a choice field keeps its first line, matched like our parser. An empty
        or unmatched answer is returned as is (and scored as wrong), never raised."""
        outs = list(signature.output_fields.items())
        text = f"{_prefix(outs[0][1], outs[0][0])} {completion.lstrip()}"
        values: dict[str, Any] = {}
        spans: list[tuple[str, int, int]] = []  # (field, prefix start, value start)
        cursor = 0
        for name, field in outs:
            match = re.compile(r"(?:^|\n)\s*" + re.escape(_prefix(field, name)), re.IGNORECASE).search(text, cursor)
            if match:
                spans.append((name, match.start(), match.end()))
                cursor = match.end()
        for i, (name, _, start) in enumerate(spans):
            end = spans[i + 1][1] if i + 1 < len(spans) else len(text)
            values[name] = text[start:end].strip()
        for name, field in outs:
            raw = values.get(name, "")
            choices = _choices(field)
            if choices:
                first_line = normalize_choice(raw.splitlines()[0]) if raw else ""
                values[name] = next((c for c in choices if normalize_choice(c) == first_line),
                                    raw.splitlines()[0] if raw else "")
            else:
                values[name] = raw
        return values


def build_program(spec: dict[str, Any]) -> dspy.Module:
    """A dspy.Module with one dspy.Predict per predictor of our spec, chained by field name."""

    class SpecProgram(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.order: list[str] = []
            for predictor in spec["predictors"]:
                sig = predictor["signature"]
                fields: dict[str, Any] = {}
                for f in sig["inputs"]:
                    fields[f["name"]] = (str, dspy.InputField(prefix=f["prefix"], desc=f.get("description") or ""))
                for f in sig["outputs"]:
                    kind: Any = Literal[tuple(f["choices"])] if f.get("choices") else str
                    fields[f["name"]] = (kind, dspy.OutputField(prefix=f["prefix"], desc=f.get("description") or ""))
                signature = dspy.Signature(fields, sig["instructions"])
                setattr(self, predictor["name"], dspy.Predict(signature))
                self.order.append(predictor["name"])

        def forward(self, **inputs: Any) -> dspy.Prediction:
            values = dict(inputs)
            for name in self.order:
                predict = getattr(self, name)
                result = predict(**{k: values[k] for k in predict.signature.input_fields})
                values.update({k: result[k] for k in predict.signature.output_fields})
            return dspy.Prediction(**{k: v for k, v in values.items() if k not in inputs})

    return SpecProgram()


class ScoreLogHook(logging.Handler):
    """Reads MIPROv2's trial log lines and records (LM calls so far, best full-validation score)."""

    PATTERNS = (re.compile(r"Default program score: ([0-9.]+)"), re.compile(r"Best full score so far: ([0-9.]+)"))

    def __init__(self, proxy_url: str) -> None:
        super().__init__(level=logging.INFO)
        self.proxy_url = proxy_url
        self.start = 0
        self.points: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for pattern in self.PATTERNS:
            match = pattern.search(message)
            if match:
                score = float(match.group(1))
                from bench.proxy import proxy_mark

                # Counted at the proxy: the proposer calls copies of the LM, which RawTextLM.calls misses.
                self.points.append((proxy_mark(self.proxy_url) - self.start, score / 100))  # dspy.Evaluate scores are percentages
