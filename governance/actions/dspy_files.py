"""DSPy saved-program files in and out of governed programs.

An import is a new draft version (origin "DSPy import") made by `versions.create_version`, plus a
`version.dspy_imported` event naming the file and its SHA-256; a file for other fields, a pickle or
malformed JSON is refused on field "file" and nothing is written. An export is the ``module.save()`` JSON of an
approved version (the same versions a signed bundle may be made of), audited as `version.dspy_exported`.
`create_program_from_dspy` makes a whole program from a file alone, `create_program_from_file` from a file that
is either a program spec or a DSPy file (the portal's "new program" page).
The file format and what round-trips exactly: optimizer/dspy_compat.py and docs/optimizer.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from governance.actions import exports as export_actions
from governance.actions import programs as program_actions
from governance.actions import versions as version_actions
from governance.actions._common import Checks
from governance.audit import record_event
from governance.errors import InvalidInput
from governance.models import Program, PromptVersion, Role, VersionOrigin
from governance.permissions import require_role
from optimizer import (
    DSPyImport,
    ProgramSpec,
    SignatureHintError,
    SpecError,
    content_hash,
    export_dspy_state,
    import_dspy_state,
    parse_dspy_json,
    program_from_dspy,
    resolve_layout,
)

MAX_FILE_BYTES = 5 * 1024 * 1024  # a saved program with hundreds of demos is well under a megabyte


def read_upload(content: bytes | str | Mapping[str, Any], *, filename: str = "",
                what: str = "DSPy file") -> dict[str, Any]:
    """The JSON object in an uploaded file (bytes or text) or an already parsed one; InvalidInput on "file".

    `what` names the file in messages ("file" when it may be a spec as well as a dspy state)."""
    if isinstance(content, Mapping):
        return dict(content)
    if len(content) > MAX_FILE_BYTES:
        raise InvalidInput(f"the {what} is larger than {MAX_FILE_BYTES:,} bytes", field="file")
    source = f"{what} {filename}" if filename else f"the {what}"
    try:
        state = parse_dspy_json(content, source=source)
    except SpecError as exc:
        raise InvalidInput(str(exc), field="file") from None
    problem = _unstorable_text(state)
    if problem:
        raise InvalidInput(f"{source} {problem}", field="file")
    return state


def _unstorable_text(value: Any) -> str | None:
    """What the database cannot store in a version's JSON (NUL, unpaired surrogates); iterative on purpose."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "contains a NUL character, which a version cannot store"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "contains an unpaired surrogate escape (such as \\ud800), which is not valid Unicode"
    return None


@transaction.atomic
def import_dspy_version(program: Program, *, actor: Any, content: bytes | str | Mapping[str, Any],
                        filename: str = "", note: str = "") -> PromptVersion:
    """A draft version of `program` holding a dspy file's instructions, fields, demos and LM (author role).

    The file must fit the program's spec: same predictors (by dspy path), same fields. Its ``lm`` block, if
    any, becomes the version's LM settings; otherwise the program's defaults apply.

    Raises:
        InvalidInput: on field "file", naming what does not fit (or that it is a pickle, not JSON, ...).
        PermissionDenied: the actor may not create versions of this program.
    """
    check_import(program, actor)  # before the file is parsed: a refusal names the right, not the file
    state = read_upload(content, filename=filename)
    defaults = version_actions.initial_payload(program)["lm"]
    imported = _import(state, program_actions.parse_spec(program.spec), program, defaults)
    payload = {"program": imported.program.to_dict(), "lm": imported.lm or defaults}
    version = version_actions.create_version(
        program, actor=actor, payload=payload, origin=VersionOrigin.DSPY_IMPORT,
        note=note or f"Imported from DSPy file {filename or '(uploaded JSON)'}")
    record_event("version.dspy_imported", actor=actor, obj=version, program=program,
                 after={"version": version.number, "file": filename, "file_sha256": _sha256(content, state),
                        "layout": imported.layout, "lm_from_file": imported.lm is not None,
                        "content_hash": version.content_hash})
    return version


def _import(state: dict[str, Any], template: ProgramSpec, program: Program, defaults: dict[str, Any]) -> DSPyImport:
    try:
        return import_dspy_state(state, template, default_lm=defaults)
    except SpecError as exc:
        raise InvalidInput(f"the DSPy file does not fit program {program.slug}: {exc}", field="file") from None


def _sha256(content: bytes | str | Mapping[str, Any], state: dict[str, Any]) -> str:
    if isinstance(content, str):
        content = content.encode("utf-8")
    return hashlib.sha256(content).hexdigest() if isinstance(content, bytes) else content_hash(state)


def export_dspy(version: PromptVersion, *, actor: Any, layout: str = "auto") -> dict[str, Any]:
    """The dspy ``module.save()`` JSON of an approved version, its LM settings in the ``lm`` blocks.

    `layout`: "bare" (a one-predictor program as ``dspy.Predict.load`` reads it), "module", or "auto" (the
    layout it was imported in, else bare for one predictor).

    Raises:
        PermissionDenied: not a member of the program. IllegalTransition: the version is not approved.
        InvalidInput: on field "layout" (unknown, or bare for several predictors); on "payload" when the
            content has no dspy form (a predictor named "metadata", a malformed ``metadata["dspy"]`` record).
    """
    export_actions.check_export(version, actor)
    program = ProgramSpec.from_dict(version.payload["program"])
    try:
        resolved = resolve_layout(program, layout)
    except SpecError as exc:
        raise InvalidInput(str(exc), field="layout") from None
    try:
        state = export_dspy_state(program, lm=version.payload["lm"], layout=resolved)
    except SpecError as exc:  # a payload edited by hand before approval can hold what dspy cannot take
        raise InvalidInput(f"version {version.number} cannot be written as a DSPy file: {exc}",
                           field="payload") from None
    with transaction.atomic():
        record_event("version.dspy_exported", actor=actor, obj=version, program=version.program,
                     after={"version": version.number, "content_hash": version.content_hash, "layout": resolved,
                            "state_hash": content_hash(state)})
    return state


def spec_from_dspy(content: bytes | str | Mapping[str, Any], *, name: str, filename: str = "",
                   signatures: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A program spec (JSON) and LM settings (or None) read from a dspy file alone; InvalidInput on "file".

    dspy does not save which fields are inputs: when its default instructions or a reasoning field do not say,
    `signatures` gives them per predictor ({"predict": "text -> label: choice[a|b]"}), and so do types and
    choices (a file has none: every field is str otherwise). A signature the file needs, or one that does not
    fit it, is refused on "signatures".
    """
    state = read_upload(content, filename=filename)
    try:
        imported = program_from_dspy(state, name=name, signatures=signatures)
    except SignatureHintError as exc:
        raise InvalidInput(f"cannot make a program from the DSPy file: {exc}", field="signatures") from None
    except SpecError as exc:
        raise InvalidInput(f"cannot make a program from the DSPy file: {exc}", field="file") from None
    return imported.program.to_dict(), imported.lm


def program_spec_from_file(content: bytes | str, *, name: str, filename: str = "",
                           signatures: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The program spec in an uploaded file, which is either a spec JSON ("predictors": [...]) or a DSPy file.

    For "create a program from a spec/DSPy file": give the result to ``programs.create_program(spec=...)``,
    which validates it. A DSPy file's LM settings, if any, are in the spec's ``metadata["dspy"]["lm_settings"]``
    (``create_program_from_dspy`` makes them the program's default LM). InvalidInput on field "file".
    """
    state = read_upload(content, filename=filename)
    if _is_spec(state):
        return state
    return spec_from_dspy(state, name=name, filename=filename, signatures=signatures)[0]


def _is_spec(state: dict[str, Any]) -> bool:
    return isinstance(state.get("predictors"), list)  # our own spec; no dspy state has a "predictors" list


def check_import(program: Program, actor: Any) -> None:
    """What ``import_dspy_version`` requires of the actor before the file is read: the author role here."""
    require_role(actor, Role.AUTHOR, program, doing="create prompt versions")


# What a user may do now (governance.actions.rights gathers these tables). The DSPy export of a version is
# allowed exactly when its signed export is (exports.EXPORT_CHECKS' "export"): the same versions leave the system.
PROGRAM_DSPY_CHECKS: Checks = {"import_dspy": check_import}


def create_program_from_dspy(*, actor: Any, slug: str, name: str, content: bytes | str | Mapping[str, Any],
                             filename: str = "", signatures: Mapping[str, str] | None = None,
                             metric: str = "choice", description: str = "", **options: Any) -> Program:
    """Create a program (``programs.create_program``: author role, audited) whose spec is read from a dspy file.

    The file's LM settings, if any, become the program's default LM (over those of an `lm_config` option, which
    keeps what the file does not say, e.g. api_base); `options` are create_program's others.
    """
    spec, lm = spec_from_dspy(content, name=slug.replace("-", "_"), filename=filename, signatures=signatures)
    from_file = {k: v for k, v in (lm or {}).items() if k in ("model", "temperature", "max_tokens", "mode")}
    lm_config = {**(options.pop("lm_config", None) or {}), **from_file}
    return program_actions.create_program(actor=actor, slug=slug, name=name, spec=spec, metric=metric,
                                          description=description, lm_config=lm_config or None, **options)


def create_program_from_file(*, actor: Any, slug: str, name: str, content: bytes | str, filename: str = "",
                             signatures: Mapping[str, str] | None = None, **options: Any) -> Program:
    """Create a program from an uploaded file: a program spec JSON (``programs.create_program``) or a dspy
    ``module.save()`` JSON (``create_program_from_dspy``: its LM becomes the program's). `options` are
    create_program's others.

    Raises:
        InvalidInput: on "file" (not JSON, a pickle, too large, no program in it), on "signatures" (the dspy file
            needs one, one does not fit it, or they were given for a spec), or create_program's.
    """
    require_role(actor, Role.AUTHOR, doing="create a program")  # before the file is read: the right is named
    state = read_upload(content, filename=filename, what="file")
    if not _is_spec(state):
        try:
            return create_program_from_dspy(actor=actor, slug=slug, name=name, content=state, filename=filename,
                                            signatures=signatures, **options)
        except InvalidInput as exc:
            if exc.field != "file":
                raise
            raise InvalidInput(f"{filename or 'the file'} has no \"predictors\" list (a program spec's), so it was "
                               f"read as a DSPy file: {exc.message}", field="file") from None
    if signatures:
        raise InvalidInput(f"signatures are for a DSPy file; {filename or 'the file'} is a program spec, which "
                           "says its inputs itself", field="signatures")
    program_actions.parse_spec(state, field="file")  # a bad spec is the file's fault, named on its field
    return program_actions.create_program(actor=actor, slug=slug, name=name, spec=state, **options)
