"""Programs: named predictors wired as a pipeline, stored as plain JSON.

A later predictor may read any example input or any output of an earlier predictor. The program is the unit
the optimizer compiles (it fills in instructions and demos) and the unit governance versions and freezes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from optimizer.errors import SpecError
from optimizer.signatures import Field, Signature

PREDICTOR_KINDS = ("predict", "chain_of_thought")
REASONING_FIELD = Field(name="reasoning", type="str", prefix="Reasoning:",
                        description="Think step by step in order to produce the answer.")

Demo = dict[str, Any]


def canonical_json(value: Any) -> str:
    """The one serialization that hashes are taken over: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Predictor:
    """One LM call site: a signature, its kind, and the few-shot demos compiled into it.

    `reasoning` is a ChainOfThought's own reasoning field (a DSPy ``rationale_field``, or DSPy's default
    ``${reasoning}`` one); None renders REASONING_FIELD, so programs written before it keep their prompts.
    """

    name: str
    signature: Signature
    kind: str = "predict"
    demos: tuple[Demo, ...] = ()
    reasoning: Field | None = None

    def __post_init__(self) -> None:
        if self.kind not in PREDICTOR_KINDS:
            raise SpecError(f"predictor {self.name!r}: unknown kind {self.kind!r}; "
                            f"expected one of {', '.join(PREDICTOR_KINDS)}")
        if not self.name or not self.name.replace("_", "").replace(".", "").isalnum():
            raise SpecError(f"predictor name {self.name!r} must be alphanumeric (with _ or .)")
        object.__setattr__(self, "demos", tuple(dict(d) for d in self.demos))
        if self.reasoning is not None:
            self._check_reasoning(self.reasoning)

    def _check_reasoning(self, reasoning: Field) -> None:
        if self.kind != "chain_of_thought":
            raise SpecError(f"predictor {self.name!r}: only a chain_of_thought predictor has a reasoning field")
        if reasoning.name != REASONING_FIELD.name or reasoning.type != "str":
            raise SpecError(f"predictor {self.name!r}: the reasoning field must be a str field named "
                            f"{REASONING_FIELD.name!r}, got {reasoning.name!r} ({reasoning.type})")

    @property
    def reasoning_field(self) -> Field:
        """The reasoning output a ChainOfThought writes first: its own, or REASONING_FIELD."""
        return self.reasoning or REASONING_FIELD

    @property
    def rendered_signature(self) -> Signature:
        """The signature the LM sees: ChainOfThought puts a reasoning output first."""
        if self.kind == "chain_of_thought":
            return self.signature.prepend_output(self.reasoning_field)
        return self.signature

    @property
    def instructions(self) -> str:
        return self.signature.instructions

    def with_instructions(self, instructions: str) -> Predictor:
        return replace(self, signature=self.signature.with_instructions(instructions))

    def with_demos(self, demos: list[Demo] | tuple[Demo, ...]) -> Predictor:
        return replace(self, demos=tuple(demos))

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "kind": self.kind, "signature": self.signature.to_dict(),
                "demos": [dict(d) for d in self.demos]}
        if self.reasoning is not None:  # absent otherwise: older payloads and their hashes stay as they were
            data["reasoning"] = self.reasoning.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Predictor:
        if not isinstance(data, dict) or "name" not in data or "signature" not in data:
            raise SpecError("a predictor must be an object with 'name' and 'signature'")
        unknown = set(data) - {"name", "kind", "signature", "demos", "reasoning"}
        if unknown:
            raise SpecError(f"predictor {data['name']!r}: unknown key(s) {', '.join(sorted(unknown))}")
        reasoning = Field.from_dict(data["reasoning"]) if data.get("reasoning") is not None else None
        return cls(name=data["name"], kind=data.get("kind", "predict"),
                   signature=Signature.from_dict(data["signature"]), demos=tuple(data.get("demos", ())),
                   reasoning=reasoning)


def Predict(name: str, signature: Signature | str, instructions: str = "") -> Predictor:
    """DSPy-style constructor: ``Predict("classify", "ticket -> category")``."""
    return Predictor(name=name, signature=_as_signature(signature, instructions), kind="predict")


def ChainOfThought(name: str, signature: Signature | str, instructions: str = "") -> Predictor:
    """A predictor that writes a `reasoning` output before its own outputs."""
    return Predictor(name=name, signature=_as_signature(signature, instructions), kind="chain_of_thought")


def _as_signature(signature: Signature | str, instructions: str) -> Signature:
    if isinstance(signature, Signature):
        return signature.with_instructions(instructions) if instructions else signature
    return Signature.parse(signature, instructions=instructions)


@dataclass(frozen=True)
class ProgramSpec:
    """An ordered pipeline of predictors; the program's inputs are those no earlier predictor produces."""

    name: str
    predictors: tuple[Predictor, ...]
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "predictors", tuple(self.predictors))
        if not self.predictors:
            raise SpecError("a program needs at least one predictor")
        names = [p.name for p in self.predictors]
        if len(set(names)) != len(names):
            raise SpecError(f"duplicate predictor names in program {self.name!r}")
        self._check_wiring()

    def _check_wiring(self) -> None:
        produced: set[str] = set()
        for predictor in self.predictors:
            overlap = produced & set(predictor.rendered_signature.output_names) - {"reasoning"}
            if overlap:
                raise SpecError(f"predictor {predictor.name!r} re-produces field(s) {', '.join(sorted(overlap))}")
            produced |= set(predictor.rendered_signature.output_names)

    @property
    def input_names(self) -> list[str]:
        """Fields the caller must supply: read by some predictor, produced by none before it."""
        needed: list[str] = []
        produced: set[str] = set()
        for predictor in self.predictors:
            for name in predictor.signature.input_names:
                if name not in produced and name not in needed:
                    needed.append(name)
            produced |= set(predictor.rendered_signature.output_names)
        return needed

    @property
    def output_names(self) -> list[str]:
        """The final predictor's declared outputs: what the metric scores."""
        return self.predictors[-1].signature.output_names

    def output_field(self, name: str) -> Field | None:
        for predictor in reversed(self.predictors):
            for f in predictor.signature.outputs:
                if f.name == name:
                    return f
        return None

    def predictor(self, name: str) -> Predictor:
        for predictor in self.predictors:
            if predictor.name == name:
                return predictor
        raise KeyError(name)

    def replace_predictor(self, name: str, new: Predictor) -> ProgramSpec:
        return replace(self, predictors=tuple(new if p.name == name else p for p in self.predictors))

    def with_choices(self, instructions: dict[str, str], demos: dict[str, list[Demo]]) -> ProgramSpec:
        """A copy with the given per-predictor instructions and demos (missing names keep theirs)."""
        predictors = []
        for p in self.predictors:
            if p.name in instructions:
                p = p.with_instructions(instructions[p.name])
            if p.name in demos:
                p = p.with_demos(demos[p.name])
            predictors.append(p)
        return replace(self, predictors=tuple(predictors))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "description": self.description,
                                "predictors": [p.to_dict() for p in self.predictors]}
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def content_hash(self) -> str:
        return content_hash(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProgramSpec:
        if not isinstance(data, dict):
            raise SpecError(f"a program must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"name", "description", "predictors", "metadata"}
        if unknown:
            raise SpecError(f"program: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(data.get("predictors"), list):
            raise SpecError("program: 'predictors' must be a list")
        return cls(name=data.get("name", "program"), description=data.get("description", ""),
                   predictors=tuple(Predictor.from_dict(p) for p in data["predictors"]),
                   metadata=dict(data.get("metadata", {})))

    @classmethod
    def from_json(cls, text: str) -> ProgramSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"program JSON is malformed: {exc}") from exc
        return cls.from_dict(data)


# Deprecated alias, kept so that the CLI, bench/, DSPy interop and code written before the rename keep working.
# New code says ProgramSpec: in governance, Program is the Django model.
Program = ProgramSpec
