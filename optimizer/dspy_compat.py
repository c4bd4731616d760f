"""Read and write DSPy's saved-program JSON (what ``module.save("x.json")`` writes in dspy 3.x).

No import of dspy happens here: the format is plain JSON, so the library stays usable without it.

Mapping of a Program onto a DSPy module:
    A Program is a ``dspy.Module`` subclass with one attribute per predictor, in program order; the
    attribute name is the predictor name, the value a ``dspy.Predict`` (kind ``predict``) or a
    ``dspy.ChainOfThought`` (kind ``chain_of_thought``). ``named_predictors()`` of that module gives the
    state paths: ``"classify"`` for a Predict, ``"answer.predict"`` for the inner Predict of a
    ChainOfThought. A dotted predictor name ("stage.classify") is a path into nested modules.

    With ``bare=True`` a one-predictor program maps onto a bare ``dspy.Predict`` (its state written flat
    at the top level; dspy names that predictor ``"self"``) or a bare ``dspy.ChainOfThought`` (path
    ``"predict"``). ``from_dspy_state`` accepts either layout for a one-predictor template.

Per predictor, the state holds the instructions, one ``{"prefix", "description"}`` entry per field
(inputs, then outputs; a ChainOfThought's ``reasoning`` field comes first among the outputs), and the
demos as plain dicts (bootstrapped ones carry ``"augmented": True``). Fields are matched by position:
DSPy stores no field names. An empty description is written as DSPy's placeholder ``"${name}"`` (which
DSPy renders as no description) and read back as empty. The reasoning field is written as our renderer
shows it (``REASONING_FIELD``) and skipped on reading, since a Program does not store it.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from optimizer.errors import SpecError
from optimizer.program import Demo, Predictor, Program
from optimizer.signatures import Field

REFERENCE_DSPY_VERSION = "3.4.1"
REFERENCE_CLOUDPICKLE_VERSION = "3.1"
METADATA_KEY = "metadata"
BARE_PREDICT_PATH = "self"
COT_INNER = "predict"
_PLACEHOLDER_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")

State = dict[str, Any]


def dspy_predictor_paths(program: Program, *, bare: bool = False) -> list[str]:
    """The dspy ``named_predictors()`` paths of the module a Program maps onto, in program order.

    Raises:
        SpecError: two predictors map onto one path, a path would collide with the ``metadata`` key,
            or ``bare`` is asked for a program with more than one predictor.
    """
    if bare:
        return [_bare_path(_single_predictor(program))]
    paths = [_nested_path(p) for p in program.predictors]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise SpecError(f"program {program.name!r}: predictors map onto the same dspy path(s) "
                        f"{', '.join(map(repr, duplicates))}")
    if METADATA_KEY in paths:
        raise SpecError(f"program {program.name!r}: a Predict named {METADATA_KEY!r} would collide with "
                        f"dspy's top-level {METADATA_KEY!r} key; rename the predictor")
    return paths


def to_dspy_state(program: Program, *, bare: bool = False) -> State:
    """The JSON-able dict dspy's ``program.save("x.json")`` writes for the module this program maps onto."""
    paths = dspy_predictor_paths(program, bare=bare)
    state: State = {}
    for path, predictor in zip(paths, program.predictors, strict=True):
        if path == BARE_PREDICT_PATH:
            state.update(_predictor_state(predictor))
        else:
            state[path] = _predictor_state(predictor)
    state[METADATA_KEY] = {"dependency_versions": dependency_versions()}
    return state


def from_dspy_state(state: State, template: Program) -> Program:
    """A copy of `template` with the instructions, prefixes, descriptions and demos found in a dspy state.

    Every predictor of `template` must have its path in `state` (or, for a one-predictor template, the
    bare layout); extra keys are ignored.

    Raises:
        SpecError: the state is not an object, a predictor path is missing, or a predictor's field count
            or shape does not match.
    """
    if not isinstance(state, dict):
        raise SpecError(f"a dspy state must be a JSON object, got {type(state).__name__}")
    paths = dspy_predictor_paths(template)
    predictors = tuple(_apply_state(p, _find_predictor_state(state, template, path), path)
                       for path, p in zip(paths, template.predictors, strict=True))
    return replace(template, predictors=predictors)


def save_dspy_state(program: Program, path: str | Path, *, bare: bool = False) -> Path:
    """Write ``to_dspy_state(program)`` as dspy does (2-space indent, UTF-8, trailing newline)."""
    target = Path(path)
    if target.suffix != ".json":
        raise SpecError(f"a dspy state file must end with .json, got {str(target)!r}")
    text = json.dumps(to_dspy_state(program, bare=bare), indent=2, ensure_ascii=False) + "\n"
    target.write_text(text, encoding="utf-8")
    return target


def load_dspy_state(path: str | Path, template: Program) -> Program:
    """Read a dspy ``.json`` state file and apply it onto `template` (see ``from_dspy_state``)."""
    source = Path(path)
    try:
        state = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpecError(f"dspy state file {str(source)!r} is malformed JSON: {exc}") from exc
    return from_dspy_state(state, template)


def dependency_versions() -> dict[str, str]:
    """The ``metadata.dependency_versions`` block; installed dspy/cloudpickle versions when present.

    dspy's ``load`` looks up exactly these three keys and only warns on a mismatch.
    """
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "dspy": _installed_version("dspy") or REFERENCE_DSPY_VERSION,
            "cloudpickle": _major_minor(_installed_version("cloudpickle")) or REFERENCE_CLOUDPICKLE_VERSION}


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def _major_minor(version: str | None) -> str | None:
    return ".".join(version.split(".")[:2]) if version else None


def _nested_path(predictor: Predictor) -> str:
    return f"{predictor.name}.{COT_INNER}" if predictor.kind == "chain_of_thought" else predictor.name


def _bare_path(predictor: Predictor) -> str:
    return COT_INNER if predictor.kind == "chain_of_thought" else BARE_PREDICT_PATH


def _single_predictor(program: Program) -> Predictor:
    if len(program.predictors) != 1:
        raise SpecError(f"program {program.name!r} has {len(program.predictors)} predictors; "
                        "only a one-predictor program maps onto a bare dspy module")
    return program.predictors[0]


def _predictor_state(predictor: Predictor) -> State:
    signature = predictor.rendered_signature
    return {"traces": [], "train": [], "demos": [dict(d) for d in predictor.demos],
            "signature": {"instructions": signature.instructions,
                          "fields": [_field_state(f) for f in signature.fields]},
            "lm": None}


def _field_state(f: Field) -> dict[str, str]:
    return {"prefix": f.prefix, "description": f.description or f"${{{f.name}}}"}


def _find_predictor_state(state: State, template: Program, path: str) -> State:
    if path in state:
        return _as_object(state[path], path, "predictor state")
    if len(template.predictors) == 1:
        bare = _bare_path(template.predictors[0])
        if bare == BARE_PREDICT_PATH and "signature" in state:
            return state
        if bare in state:
            return _as_object(state[bare], bare, "predictor state")
    found = ", ".join(repr(k) for k in state if k != METADATA_KEY) or "none"
    raise SpecError(f"dspy state has no predictor at path {path!r}; predictor paths found: {found}")


def _apply_state(predictor: Predictor, state: State, path: str) -> Predictor:
    signature_state = _as_object(state.get("signature"), path, "'signature'")
    instructions = signature_state.get("instructions")
    if not isinstance(instructions, str):
        raise SpecError(f"dspy predictor {path!r}: signature 'instructions' must be a string")
    saved = _saved_fields(signature_state, path)
    rendered = predictor.rendered_signature.fields
    if len(saved) != len(rendered):
        raise SpecError(f"dspy predictor {path!r} has {len(saved)} signature fields, but predictor "
                        f"{predictor.name!r} has {len(rendered)} ({', '.join(f.name for f in rendered)})")
    by_name = dict(zip((f.name for f in rendered), saved, strict=True))
    signature = replace(predictor.signature, instructions=instructions,
                        inputs=tuple(_apply_field(f, by_name[f.name]) for f in predictor.signature.inputs),
                        outputs=tuple(_apply_field(f, by_name[f.name]) for f in predictor.signature.outputs))
    return replace(predictor, signature=signature, demos=_demos(state, path, predictor.demos))


def _saved_fields(signature_state: State, path: str) -> list[dict[str, str]]:
    fields = signature_state.get("fields")
    if not isinstance(fields, list):
        raise SpecError(f"dspy predictor {path!r}: signature 'fields' must be a list")
    for index, saved in enumerate(fields):
        if not (isinstance(saved, dict) and isinstance(saved.get("prefix"), str)
                and isinstance(saved.get("description"), str)):
            raise SpecError(f"dspy predictor {path!r}: field {index} must be an object with string "
                            f"'prefix' and 'description', got {saved!r}")
    return fields


def _apply_field(f: Field, saved: dict[str, str]) -> Field:
    description = "" if _PLACEHOLDER_RE.fullmatch(saved["description"]) else saved["description"]
    return replace(f, prefix=saved["prefix"], description=description)


def _demos(state: State, path: str, current: tuple[Demo, ...]) -> tuple[Demo, ...]:
    """The saved demos as plain dicts; a state without a 'demos' key keeps `current` (as dspy does)."""
    if "demos" not in state:
        return current
    demos = state["demos"]
    if not isinstance(demos, list) or not all(isinstance(d, dict) for d in demos):
        raise SpecError(f"dspy predictor {path!r}: 'demos' must be a list of objects")
    return tuple(dict(d) for d in demos)


def _as_object(value: Any, path: str, what: str) -> State:
    if not isinstance(value, dict):
        raise SpecError(f"dspy predictor {path!r}: {what} must be an object, got {type(value).__name__}")
    return value
