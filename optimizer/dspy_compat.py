"""Read and write DSPy's saved-program JSON (what ``module.save("x.json")`` writes in dspy 3.x), exactly.

No import of dspy happens here: the format is plain JSON, so the library stays usable without it.

Mapping of a ProgramSpec onto a DSPy module:
    A program is a ``dspy.Module`` subclass with one attribute per predictor, in program order; the
    attribute name is the predictor name, the value a ``dspy.Predict`` (kind ``predict``) or a
    ``dspy.ChainOfThought`` (kind ``chain_of_thought``). ``named_predictors()`` of that module gives the
    state paths: ``"classify"`` for a Predict, ``"answer.predict"`` for the inner Predict of a
    ChainOfThought. A dotted predictor name ("stage.classify") is a path into nested modules.

    The bare layout maps a one-predictor program onto a bare ``dspy.Predict`` (its state written flat at the
    top level; dspy names that predictor ``"self"``) or a bare ``dspy.ChainOfThought`` (path ``"predict"``).
    Reading accepts either layout for a one-predictor template and remembers which one it read.

Per predictor, the state holds the instructions, one ``{"prefix", "description"}`` entry per field
(inputs, then outputs; a ChainOfThought's ``reasoning`` field comes first among the outputs), the demos as
plain dicts (bootstrapped ones carry ``"augmented": True``) and an ``lm`` block (a ``dspy.LM`` state, or
null). Fields are matched by position: DSPy stores no field names, so the names it does leave behind (its
``${name}`` placeholder descriptions, the keys of the demos) are checked against the program's, and a file
written for other fields is refused naming them. An empty description is written as the placeholder (which
DSPy renders as no description) and read back as empty. A ChainOfThought's reasoning field is read into
``Predictor.reasoning`` (its own prefix and description) and written back from it.

The LM: a version has one LM configuration (model, temperature, max_tokens, mode); DSPy has an optional
``lm`` block per predictor. Reading maps the blocks (they must agree) onto that configuration and keeps what
it cannot hold (which predictors had a block, the block's other keys) in ``metadata["dspy"]`` of the program,
with the layout; writing puts the configuration back into those blocks. So a file read and written again is
the same file, and a changed model or temperature shows up in it.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from optimizer.errors import SignatureHintError, SpecError
from optimizer.lm import LMConfig
from optimizer.program import REASONING_FIELD, Demo, Predictor, ProgramSpec
from optimizer.signatures import Field, Signature

REFERENCE_DSPY_VERSION = "3.4.1"
REFERENCE_CLOUDPICKLE_VERSION = "3.1"
METADATA_KEY = "metadata"
BARE_PREDICT_PATH = "self"
COT_INNER = "predict"
BARE = "bare"
MODULE = "module"
LAYOUTS = ("auto", BARE, MODULE)
PROGRAM_METADATA_KEY = "dspy"  # where ProgramSpec.metadata keeps what a version cannot hold of a dspy file
DSPY_LM_CLASS = "dspy.clients.lm.LM"
DEMO_FLAG = "augmented"
_PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DEFAULT_INSTRUCTIONS_RE = re.compile(r"Given the fields (.+), produce the fields (.+)\.")
_MODEL_TYPES = {"text": "completion"}  # dspy model_type -> our mode ("chat" and "responses" are chat)
_LM_DEFAULTS = LMConfig(model="-")

State = dict[str, Any]


@dataclass(frozen=True)
class DSPyImport:
    """What a dspy file gives a version: its program and, if any predictor had an ``lm`` block, its LM.

    Attributes:
        program: the program with the file's instructions, prefixes, descriptions, reasoning fields and demos;
            ``metadata["dspy"]`` records the layout and the ``lm`` blocks for an exact export.
        lm: ``{"model", "temperature", "max_tokens", "mode"}`` from the blocks (a missing or null temperature
            or max_tokens takes the caller's default), or None when no predictor had one.
        layout: "bare" or "module", the layout the file was read in.
    """

    program: ProgramSpec
    lm: dict[str, Any] | None
    layout: str


# --- files --------------------------------------------------------------------------------------------------


def parse_dspy_json(content: bytes | str, *, source: str = "dspy file") -> State:
    """The state in the bytes of a dspy ``.json`` file; pickles, binary and malformed JSON are SpecErrors."""
    if isinstance(content, bytes):
        if content[:1] == b"\x80":  # every pickle protocol >= 2 starts here; cloudpickle writes protocol 5
            raise SpecError(f"{source} is a pickle (dspy's .pkl format); pickles run code when loaded and are "
                            "refused: save the program with module.save('program.json')")
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SpecError(f"{source} is not UTF-8 JSON; save the program with module.save('program.json')") \
                from None
    try:
        state = json.loads(content, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{source} is malformed JSON: {exc}") from None
    except ValueError as exc:  # NaN, Infinity or an overflowing number: not JSON, and not storable as such
        raise SpecError(f"{source} is not plain JSON: {exc}") from None
    except RecursionError:
        raise SpecError(f"{source} is nested too deeply to be a saved program") from None
    if not isinstance(state, dict):
        raise SpecError(f"{source}: a dspy state must be a JSON object, got {type(state).__name__}")
    return state


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a floating-point number")
    return value


def read_dspy_file(path: str | Path) -> State:
    """The state in a dspy ``.json`` file; a missing file, a directory or a pickle is one SpecError."""
    return parse_dspy_json(read_dspy_bytes(path), source=str(path))


def read_dspy_bytes(path: str | Path) -> bytes:
    """The bytes of a dspy file, or one SpecError naming why there are none (missing, a directory, unreadable)."""
    source = Path(path)
    if source.is_dir():
        raise SpecError(f"{source} is a directory (dspy's save_program=True layout, a pickled program); "
                        "save the program with module.save('program.json') instead")
    try:
        return source.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{source}: file not found") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot read it ({exc.strerror})") from None


def save_dspy_state(program: ProgramSpec, path: str | Path, *, bare: bool = False,
                    lm: Mapping[str, Any] | None = None) -> Path:
    """Write ``to_dspy_state(program)`` as dspy does (2-space indent, UTF-8, trailing newline)."""
    target = Path(path)
    if target.suffix != ".json":
        raise SpecError(f"a dspy state file must end with .json, got {str(target)!r}")
    target.write_text(dumps_dspy_state(to_dspy_state(program, bare=bare, lm=lm)), encoding="utf-8")
    return target


def dumps_dspy_state(state: State) -> str:
    """The text dspy's ``save`` writes for `state`."""
    return json.dumps(state, indent=2, ensure_ascii=False) + "\n"


def load_dspy_state(path: str | Path, template: ProgramSpec) -> ProgramSpec:
    """Read a dspy ``.json`` state file and apply it onto `template` (see ``from_dspy_state``)."""
    return from_dspy_state(read_dspy_file(path), template)


# --- writing ------------------------------------------------------------------------------------------------


def dspy_predictor_paths(program: ProgramSpec, *, bare: bool = False) -> list[str]:
    """The dspy ``named_predictors()`` paths of the module a program maps onto, in program order.

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


def default_layout(program: ProgramSpec) -> str:
    """The layout a file was read in; otherwise bare for one predictor (what ``dspy.Predict.load`` reads)."""
    recorded = program.metadata.get(PROGRAM_METADATA_KEY, {})
    if isinstance(recorded, dict) and recorded.get("layout") in (BARE, MODULE):
        return str(recorded["layout"])
    return BARE if len(program.predictors) == 1 else MODULE


def resolve_layout(program: ProgramSpec, layout: str = "auto") -> str:
    """"bare" or "module": `layout` itself, or for "auto" the ``default_layout``."""
    if layout not in LAYOUTS:
        raise SpecError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout == BARE and len(program.predictors) != 1:
        raise SpecError(f"layout 'bare' is for a one-predictor program; {program.name!r} has "
                        f"{len(program.predictors)} predictors (use 'module')")
    return default_layout(program) if layout == "auto" else layout


def export_dspy_state(program: ProgramSpec, *, lm: Mapping[str, Any] | None = None, layout: str = "auto") -> State:
    """The dspy state of a version: `layout` as ``resolve_layout``; `lm` is the version's LM settings."""
    return to_dspy_state(program, bare=resolve_layout(program, layout) == BARE, lm=lm)


def to_dspy_state(program: ProgramSpec, *, bare: bool = False, lm: Mapping[str, Any] | None = None) -> State:
    """The JSON-able dict dspy's ``module.save("x.json")`` writes for the module this program maps onto.

    With `lm` (a version's LM settings) the predictors get ``lm`` blocks: those that had one when the file was
    read, or every predictor of a program that never came from dspy. Without it every block is null.
    """
    paths = dspy_predictor_paths(program, bare=bare)
    blocks = _lm_blocks(program, lm)
    state: State = {}
    for path, predictor in zip(paths, program.predictors, strict=True):
        predictor_state = _predictor_state(predictor, blocks.get(predictor.name))
        if path == BARE_PREDICT_PATH:
            state.update(predictor_state)
        else:
            state[path] = predictor_state
    state[METADATA_KEY] = {"dependency_versions": dependency_versions()}
    return state


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


def _single_predictor(program: ProgramSpec) -> Predictor:
    if len(program.predictors) != 1:
        raise SpecError(f"program {program.name!r} has {len(program.predictors)} predictors; "
                        "only a one-predictor program maps onto a bare dspy module")
    return program.predictors[0]


def _predictor_state(predictor: Predictor, lm_block: State | None) -> State:
    signature = predictor.rendered_signature
    return {"traces": [], "train": [], "demos": [dict(d) for d in predictor.demos],
            "signature": {"instructions": signature.instructions,
                          "fields": [_field_state(f) for f in signature.fields]},
            "lm": lm_block}


def _field_state(f: Field) -> dict[str, str]:
    return {"prefix": f.prefix, "description": f.description or f"${{{f.name}}}"}


# --- the lm block -------------------------------------------------------------------------------------------


def _lm_blocks(program: ProgramSpec, lm: Mapping[str, Any] | None) -> dict[str, State]:
    """Per predictor name, the ``lm`` block to write (predictors without one are absent)."""
    if lm is None:
        return {}
    recorded = program.metadata.get(PROGRAM_METADATA_KEY)
    if not isinstance(recorded, dict) or "lm_predictors" not in recorded:
        return {p.name: _lm_block(None, {}, lm) for p in program.predictors}
    names, original, read = recorded["lm_predictors"], recorded.get("lm"), recorded.get("lm_settings") or {}
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and isinstance(original, (dict, type(None))) and isinstance(read, dict)):
        raise SpecError(f"program {program.name!r}: metadata.{PROGRAM_METADATA_KEY} must hold 'lm_predictors' (a list "
                        "of predictor names), 'lm' (an object or null) and 'lm_settings' (an object), as an import "
                        "wrote them")
    return {name: _lm_block(original, read, lm) for name in names}


def _lm_block(original: Mapping[str, Any] | None, read: Mapping[str, Any], lm: Mapping[str, Any]) -> State:
    """`original` (or a fresh ``dspy.LM`` state) carrying the settings `lm`.

    A setting still equal to what reading `original` gave (`read`) keeps the block's own value, so a null
    temperature read as the default, or a "responses" model type read as chat, is written back unchanged;
    an edited one is written as edited.
    """
    block: State = dict(original) if original else {
        "_dspy_lm_class": DSPY_LM_CLASS, "model": "", "model_type": "chat", "cache": True, "num_retries": 3,
        "temperature": None, "max_tokens": None, "finetuning_model": None, "launch_kwargs": {}, "train_kwargs": {}}
    for key in ("model", "temperature", "max_tokens"):
        if key in lm and not (key in read and read[key] == lm[key]):
            block[key] = lm[key]
    if not ("mode" in read and read["mode"] == lm.get("mode")):
        block["model_type"] = "text" if _resolved_mode(lm) == "completion" else "chat"
    return block


def _resolved_mode(lm: Mapping[str, Any]) -> str:
    try:
        return LMConfig(model=str(lm.get("model") or "-"), mode=str(lm.get("mode") or "auto")).resolved_mode
    except ValueError as exc:
        raise SpecError(f"LM settings: {exc}") from None


def lm_settings(block: Mapping[str, Any], *, default: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A version's LM settings from a dspy ``lm`` block; a null temperature or max_tokens takes `default`'s."""
    fallback = default or {}
    model = block.get("model")
    if not isinstance(model, str) or not model.strip():
        raise SpecError(f"dspy lm block: 'model' must be a non-empty model string, got {model!r}")
    temperature = block.get("temperature")
    if temperature is None:
        temperature = fallback.get("temperature", _LM_DEFAULTS.temperature)
    max_tokens = block.get("max_tokens")
    if max_tokens is None:
        max_tokens = fallback.get("max_tokens", _LM_DEFAULTS.max_tokens)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise SpecError(f"dspy lm block: 'temperature' must be a number >= 0, got {temperature!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise SpecError(f"dspy lm block: 'max_tokens' must be an integer >= 1, got {max_tokens!r}")
    mode = _MODEL_TYPES.get(str(block.get("model_type", "chat")), "chat")
    return {"model": model, "temperature": temperature, "max_tokens": max_tokens, "mode": mode}


# --- reading ------------------------------------------------------------------------------------------------


def from_dspy_state(state: State, template: ProgramSpec) -> ProgramSpec:
    """A copy of `template` with the content a dspy state holds (see ``import_dspy_state``).

    Content only: neither the LM nor the record of the file's layout and ``lm`` blocks (the template's metadata
    stays as it was), so ``from_dspy_state(to_dspy_state(p), p) == p``. Use ``import_dspy_state`` to write the
    file back exactly.
    """
    return replace(import_dspy_state(state, template).program, metadata=template.metadata)


def import_dspy_state(state: State, template: ProgramSpec, *,
                      default_lm: Mapping[str, Any] | None = None) -> DSPyImport:
    """A copy of `template` with the instructions, fields, reasoning fields, demos and LM of a dspy state.

    Every predictor of `template` must have its path in `state` (or, for a one-predictor template, the
    bare layout); extra keys are ignored, as dspy's ``load`` does.

    Raises:
        SpecError: the state is not an object, a predictor path is missing, a predictor's fields are not the
            template's (their count, their ``${name}`` descriptions or the demos' keys say so), traces or
            train data a version cannot keep, or ``lm`` blocks that differ between predictors.
    """
    if not isinstance(state, dict):
        raise SpecError(f"a dspy state must be a JSON object, got {type(state).__name__}")
    paths = dspy_predictor_paths(template)
    found = [_find_predictor_state(state, template, path) for path in paths]
    layout = BARE if any(f[0] != path for f, path in zip(found, paths, strict=True)) else MODULE
    predictors = tuple(_apply_state(p, predictor_state, found_path)
                       for p, (found_path, predictor_state) in zip(template.predictors, found, strict=True))
    blocks = {p.name: _lm_block_of(s, path) for p, (path, s) in zip(template.predictors, found, strict=True)}
    lm_block = _one_lm_block(blocks)
    lm = lm_settings(lm_block, default=default_lm) if lm_block is not None else None
    recorded: dict[str, Any] = {"layout": layout, "lm_predictors": [n for n, b in blocks.items() if b]}
    if lm_block is not None:
        recorded.update({"lm": lm_block, "lm_settings": lm})
    metadata = {**template.metadata, PROGRAM_METADATA_KEY: recorded}
    program = replace(template, predictors=predictors, metadata=metadata)
    return DSPyImport(program=program, lm=lm, layout=layout)


def _find_predictor_state(state: State, template: ProgramSpec, path: str) -> tuple[str, State]:
    if path in state and path != METADATA_KEY:
        return path, _as_object(state[path], path, "predictor state")
    if len(template.predictors) == 1:
        bare = _bare_path(template.predictors[0])
        if bare == BARE_PREDICT_PATH and "signature" in state:
            return bare, state
        if bare in state:
            return bare, _as_object(state[bare], bare, "predictor state")
    found = ", ".join(repr(k) for k in state if k != METADATA_KEY) or "none"
    raise SpecError(f"dspy state has no predictor at path {path!r}; predictor paths found: {found}")


def _apply_state(predictor: Predictor, state: State, path: str) -> Predictor:
    signature_state = _as_object(state.get("signature"), path, "'signature'")
    instructions = signature_state.get("instructions")
    if not isinstance(instructions, str):
        raise SpecError(f"dspy predictor {path!r}: signature 'instructions' must be a string")
    _refuse_unkept_state(state, path)
    saved = _saved_fields(signature_state, path)
    rendered = predictor.rendered_signature.fields
    names = [f.name for f in rendered]
    if len(saved) != len(rendered):
        raise SpecError(f"dspy predictor {path!r} has {len(saved)} signature fields, but predictor "
                        f"{predictor.name!r} has {len(rendered)} ({', '.join(names)})")
    demos = _demos(state, path, predictor.demos)
    _check_field_names(predictor, path, saved, demos)
    by_name = dict(zip(names, saved, strict=True))
    signature = replace(predictor.signature, instructions=instructions,
                        inputs=tuple(_apply_field(f, by_name[f.name]) for f in predictor.signature.inputs),
                        outputs=tuple(_apply_field(f, by_name[f.name]) for f in predictor.signature.outputs))
    reasoning = None
    if predictor.kind == "chain_of_thought":
        reasoning = _apply_field(predictor.reasoning_field, by_name[REASONING_FIELD.name])
        reasoning = None if reasoning == REASONING_FIELD else reasoning
    return replace(predictor, signature=signature, demos=demos, reasoning=reasoning)


def _refuse_unkept_state(state: State, path: str) -> None:
    """dspy's ``dump_state`` writes these back; a version keeps none of them, so a file holding them is refused."""
    for key in ("traces", "train", "fields"):
        if state.get(key):
            raise SpecError(f"dspy predictor {path!r} holds {key!r} data, which a program version does not keep; "
                            f"clear it (predictor.{key} = {'{}' if key == 'fields' else '[]'}) and save again")


def _check_field_names(predictor: Predictor, path: str, saved: list[dict[str, str]], demos: tuple[Demo, ...]) -> None:
    """Refuse a file written for other fields: its ``${name}`` descriptions or its demos' keys name them."""
    names = [f.name for f in predictor.rendered_signature.fields]
    file_names = [_placeholder(s["description"]) for s in saved]
    if any(found is not None and found != name for found, name in zip(file_names, names, strict=True)):
        shown = ", ".join(found or "?" for found in file_names)
        raise SpecError(f"dspy predictor {path!r} was written for fields {shown}, but predictor {predictor.name!r} "
                        f"has fields {', '.join(names)} (dspy matches fields by position; a file for other "
                        "fields would be read into the wrong ones)")
    inputs = set(predictor.signature.input_names)
    for index, demo in enumerate(demos):
        if not inputs & set(demo):
            keys = ", ".join(k for k in demo if k != DEMO_FLAG) or "none"
            raise SpecError(f"dspy predictor {path!r}: demo {index} has fields {keys}, but predictor "
                            f"{predictor.name!r} reads {', '.join(predictor.signature.input_names)}")


def _placeholder(description: str) -> str | None:
    match = _PLACEHOLDER_RE.fullmatch(description)
    return match.group(1) if match else None


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


def _lm_block_of(state: State, path: str) -> State | None:
    block = state.get("lm")
    if block is None:
        return None
    block = _as_object(block, path, "'lm'")
    if "api_key" in block:  # dspy never writes one; a program version is no place for a secret
        raise SpecError(f"dspy predictor {path!r}: its lm block holds an api_key; remove it (secrets come from "
                        "the environment)")
    return block


def _one_lm_block(blocks: dict[str, State | None]) -> State | None:
    """The one block the predictors share: a version has one LM configuration, so different ones are refused."""
    present = {name: block for name, block in blocks.items() if block}
    first = next(iter(present.values()), None)
    if any(block != first for block in present.values()):
        raise SpecError(f"dspy predictors {', '.join(map(repr, present))} have different lm blocks; a program "
                        "version has one LM configuration (give them the same dspy.LM)")
    return first


def _as_object(value: Any, path: str, what: str) -> State:
    if not isinstance(value, dict):
        raise SpecError(f"dspy predictor {path!r}: {what} must be an object, got {type(value).__name__}")
    return value


# --- a program spec from a file alone -----------------------------------------------------------------------


def program_from_dspy(state: State, *, name: str, signatures: Mapping[str, str] | None = None,
                      default_lm: Mapping[str, Any] | None = None) -> DSPyImport:
    """A new program spec from a dspy state alone (no template): what "create a program from a DSPy file" needs.

    dspy stores neither field names nor which fields are inputs. Names come from the ``${name}`` descriptions
    (then the demos' keys, then the prefixes); the split from dspy's default instructions ("Given the fields
    `a`, produce the fields `b`."), or a ChainOfThought's reasoning field. When neither tells, or to give types
    and choices, pass the predictor's signature in `signatures` ({predictor name: "a, b -> c: choice[x|y]"}).
    Predictor names are the state's paths ("predict" for a bare module); kinds come from the paths and fields.

    Raises:
        SpecError: naming the predictor whose names or inputs cannot be told, or any ``import_dspy_state`` error.
    """
    if not isinstance(state, dict):
        raise SpecError(f"a dspy state must be a JSON object, got {type(state).__name__}")
    hints = dict(signatures or {})
    states = _predictor_states(state)
    names = {path: _predictor_names(path) for path, _ in states}
    unknown = sorted(set(hints) - {n for candidates in names.values() for n in candidates})
    if unknown:
        raise SignatureHintError(f"signatures name predictor(s) {', '.join(unknown)} the file does not have "
                        f"(its predictors: {', '.join(' or '.join(c) for c in names.values())})")
    predictors = tuple(_infer_predictor(path, predictor_state, hints) for path, predictor_state in states)
    template = ProgramSpec(name=name, predictors=predictors)
    return import_dspy_state(state, template, default_lm=default_lm)


def _predictor_states(state: State) -> list[tuple[str, State]]:
    if "signature" in state:
        return [(BARE_PREDICT_PATH, state)]
    found = [(path, _as_object(value, path, "predictor state")) for path, value in state.items()
             if path != METADATA_KEY]
    if not found:
        raise SpecError("dspy state has no predictors (no key besides 'metadata')")
    return found


def _infer_predictor(path: str, state: State, hints: dict[str, str]) -> Predictor:
    signature_state = _as_object(state.get("signature"), path, "'signature'")
    saved = _saved_fields(signature_state, path)
    cot_name = _cot_name(path)
    name = COT_INNER if path == BARE_PREDICT_PATH else path
    if cot_name is not None and cot_name in hints:
        name = cot_name
    if name in hints:
        signature = _hinted_signature(name, hints[name])
        declared = len(signature.fields)
        if cot_name is not None and len(saved) == declared + 1:
            return Predictor(name=cot_name, signature=signature, kind="chain_of_thought")
        if len(saved) != declared:
            raise SignatureHintError(f"dspy predictor {path!r} has {len(saved)} fields; the signature given for it has "
                            f"{declared} ({', '.join(signature.input_names + signature.output_names)})", predictor=name)
        return Predictor(name=name, signature=signature)
    names = _field_names(path, saved, state.get("demos"))
    inputs = _input_count(path, names, signature_state.get("instructions", ""), cot_name is not None)
    reasoning_at = inputs if cot_name is not None and names[inputs:inputs + 1] == [REASONING_FIELD.name] else None
    outputs = names[inputs + 1:] if reasoning_at is not None else names[inputs:]
    signature = Signature(inputs=tuple(Field(n) for n in names[:inputs]), outputs=tuple(Field(n) for n in outputs))
    if reasoning_at is not None:
        return Predictor(name=cot_name or COT_INNER, signature=signature, kind="chain_of_thought")
    return Predictor(name=name, signature=signature)


def _predictor_names(path: str) -> list[str]:
    """The names a predictor at `path` may have: its path, or the ChainOfThought's name it is the inside of."""
    if path == BARE_PREDICT_PATH:
        return [COT_INNER]
    cot_name = _cot_name(path)
    return [path] if cot_name is None or cot_name == path else [path, cot_name]


def _cot_name(path: str) -> str | None:
    """The ChainOfThought a path would be the inner Predict of ("answer.predict" -> "answer"; bare -> "predict")."""
    if path == COT_INNER:
        return COT_INNER
    return path[:-len(COT_INNER) - 1] if path.endswith(f".{COT_INNER}") else None


def _hinted_signature(name: str, shorthand: str) -> Signature:
    try:
        return Signature.parse(shorthand)
    except SpecError as exc:
        raise SignatureHintError(f"signature given for predictor {name!r}: {exc}", predictor=name) from None


def _field_names(path: str, saved: list[dict[str, str]], demos: Any) -> list[str]:
    """Per position: the ``${name}`` description, else a demo's key holding every field, else the prefix."""
    demo_keys = [[k for k in d if k != DEMO_FLAG] for d in (demos if isinstance(demos, list) else [])
                 if isinstance(d, dict)]
    full_demo = next((keys for keys in demo_keys if len(keys) == len(saved)), None)
    names = []
    for index, field_state in enumerate(saved):
        name = _placeholder(field_state["description"]) or (full_demo[index] if full_demo else None) \
            or _name_from_prefix(field_state["prefix"])
        if name is None:
            raise SignatureHintError(f"dspy predictor {path!r}: cannot tell the name of field {index} (prefix "
                                     f"{field_state['prefix']!r}); {_give_signature(path)}", predictor=_hint_name(path))
        names.append(name)
    if len(set(names)) != len(names):
        raise SignatureHintError(f"dspy predictor {path!r}: field names read from the file repeat "
                                 f"({', '.join(names)}); {_give_signature(path)}", predictor=_hint_name(path))
    return names


def _name_from_prefix(prefix: str) -> str | None:
    name = re.sub(r"\W+", "_", prefix.strip().rstrip(":").strip()).strip("_").lower()
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or "") else None


def _input_count(path: str, names: list[str], instructions: str, chain_of_thought: bool) -> int:
    """How many leading fields are inputs: dspy's default instructions say it, or the reasoning field does."""
    match = _DEFAULT_INSTRUCTIONS_RE.fullmatch(instructions.strip())
    if match:
        inputs = re.findall(r"`([^`]+)`", match.group(1))
        if inputs == names[:len(inputs)]:
            return len(inputs)
    if chain_of_thought and REASONING_FIELD.name in names[1:]:
        return names.index(REASONING_FIELD.name)
    example = f"{', '.join(names[:-1]) or 'question'} -> {names[-1]}"
    raise SignatureHintError(f"dspy predictor {path!r}: the file does not say which of its fields ({', '.join(names)}) "
                             f"are inputs (dspy does not save it); {_give_signature(path)}, e.g. '{example}'",
                             predictor=_hint_name(path))


def _hint_name(path: str) -> str:
    """The name `signatures` gives a predictor at `path` under (a ChainOfThought's own name for its inside)."""
    return _predictor_names(path)[-1]


def _give_signature(path: str) -> str:
    name = _hint_name(path)
    return "give the predictor's signature" if name == path else f"give its signature under the name {name!r}"
