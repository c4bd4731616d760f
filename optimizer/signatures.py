"""Signatures: the typed input/output contract of one LM call, plus its instructions.

A signature is plain data so that it round-trips through JSON unchanged (the governance database stores it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from optimizer.errors import SpecError

FIELD_TYPES = ("str", "int", "float", "bool", "list[str]", "choice")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def default_prefix(name: str) -> str:
    """`customer_email` -> `Customer Email:` (DSPy's convention for field prefixes)."""
    words = name.replace("_", " ").split()
    return " ".join(w[:1].upper() + w[1:] for w in words) + ":"


@dataclass(frozen=True)
class Field:
    """One named input or output field.

    Attributes:
        name: Python-identifier name, used as the key in examples and predictions.
        type: One of FIELD_TYPES; `choice` requires `choices`.
        description: What the field holds; shown to the LM.
        prefix: The label rendered before the value ("Ticket:"); defaults from the name.
        choices: The closed set of allowed values for `choice` fields.
    """

    name: str
    type: str = "str"
    description: str = ""
    prefix: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise SpecError(f"field name {self.name!r} is not a valid identifier")
        if self.type not in FIELD_TYPES:
            raise SpecError(f"field {self.name!r}: unknown type {self.type!r}; expected one of {', '.join(FIELD_TYPES)}")
        if self.type == "choice" and not self.choices:
            raise SpecError(f"field {self.name!r}: type 'choice' needs a non-empty list of choices")
        if self.type != "choice" and self.choices:
            raise SpecError(f"field {self.name!r}: choices are only allowed on type 'choice', not {self.type!r}")
        if len(set(self.choices)) != len(self.choices):
            raise SpecError(f"field {self.name!r}: choices contain duplicates")
        if not self.prefix:
            object.__setattr__(self, "prefix", default_prefix(self.name))
        object.__setattr__(self, "choices", tuple(self.choices))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "description": self.description,
                                "prefix": self.prefix}
        if self.choices:
            data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Field:
        if not isinstance(data, dict) or "name" not in data:
            raise SpecError(f"a field must be an object with a 'name', got {data!r}")
        unknown = set(data) - {"name", "type", "description", "prefix", "choices"}
        if unknown:
            raise SpecError(f"field {data['name']!r}: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(name=data["name"], type=data.get("type", "str"), description=data.get("description", ""),
                   prefix=data.get("prefix", ""), choices=tuple(data.get("choices", ())))


@dataclass(frozen=True)
class Signature:
    """Instructions plus ordered input fields and output fields."""

    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    instructions: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not self.inputs:
            raise SpecError("a signature needs at least one input field")
        if not self.outputs:
            raise SpecError("a signature needs at least one output field")
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpecError(f"duplicate field name(s) in signature: {', '.join(duplicates)}")
        if not self.instructions:
            object.__setattr__(self, "instructions", self.default_instructions())

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.inputs + self.outputs

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    def default_instructions(self) -> str:
        ins = ", ".join(f"`{n}`" for n in self.input_names)
        outs = ", ".join(f"`{n}`" for n in self.output_names)
        return f"Given the fields {ins}, produce the fields {outs}."

    def with_instructions(self, instructions: str) -> Signature:
        return replace(self, instructions=instructions)

    def prepend_output(self, new_field: Field) -> Signature:
        """A copy with `new_field` as the first output (ChainOfThought's reasoning)."""
        if new_field.name in self.output_names:
            return self
        return replace(self, outputs=(new_field, *self.outputs))

    def to_dict(self) -> dict[str, Any]:
        return {"instructions": self.instructions, "inputs": [f.to_dict() for f in self.inputs],
                "outputs": [f.to_dict() for f in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        if not isinstance(data, dict):
            raise SpecError(f"a signature must be an object, got {type(data).__name__}")
        unknown = set(data) - {"instructions", "inputs", "outputs"}
        if unknown:
            raise SpecError(f"signature: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(inputs=tuple(Field.from_dict(f) for f in data.get("inputs", [])),
                   outputs=tuple(Field.from_dict(f) for f in data.get("outputs", [])),
                   instructions=data.get("instructions", ""))

    @classmethod
    def parse(cls, shorthand: str, instructions: str = "", **field_options: dict[str, Any]) -> Signature:
        """Build from DSPy-style shorthand: ``"question, context -> answer"``.

        A field may carry a type after a colon: ``"text -> label: choice[positive|negative]"``,
        ``"q -> n: int"``. `field_options` maps a field name to extra Field keyword arguments.
        """
        if shorthand.count("->") != 1:
            raise SpecError(f"signature shorthand {shorthand!r} must contain exactly one '->'")
        left, right = shorthand.split("->")
        inputs = tuple(_parse_field(part, field_options) for part in _split_fields(left))
        outputs = tuple(_parse_field(part, field_options) for part in _split_fields(right))
        return cls(inputs=inputs, outputs=outputs, instructions=instructions)


def _split_fields(side: str) -> list[str]:
    parts = [p.strip() for p in side.split(",")]
    return [p for p in parts if p]


def _parse_field(text: str, field_options: dict[str, dict[str, Any]]) -> Field:
    name, _, type_text = (s.strip() for s in text.partition(":"))
    options = dict(field_options.get(name, {}))
    if type_text.startswith("choice[") and type_text.endswith("]"):
        options.setdefault("choices", tuple(c.strip() for c in type_text[7:-1].split("|") if c.strip()))
        type_text = "choice"
    return Field(name=name, type=type_text or options.pop("type", "str"), **options)
