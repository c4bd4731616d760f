"""Labeled datasets: validated as a whole, stored as one immutable batch identified by its content hash.

Rows are numbered from 1 in the order given (for CSV the header line is not a row), and every error names
its row; the refusal lists every bad row (up to MAX_ROW_ERRORS), so a bad file is fixed in one go. Nothing of a
rejected import is written. The API, the portal and the commands all import through `import_dataset`, so they
give the same messages.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.db import IntegrityError, transaction

from governance.actions._common import create, require_text
from governance.actions.programs import parse_spec
from governance.audit import record_event
from governance.errors import InvalidInput
from governance.models import Dataset, Example, Program, Role, Split
from governance.permissions import require_role
from optimizer import Field, ProgramSpec, content_hash

FORMATS = ("jsonl", "csv")
MAX_ROW_ERRORS = 20  # a file with thousands of bad rows has one or two mistakes repeated; the first few show them
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class _RowError(ValueError):
    """A problem with one value; the caller prefixes the row number."""


class BadRows(InvalidInput):
    """A refused import: `rows` lists each bad row's message ("row 17: ..."), the message joins them."""

    def __init__(self, rows: list[str], more: int = 0) -> None:
        message = "; ".join(rows) + (f"; and {more} more bad row{'s' if more != 1 else ''}" if more else "")
        super().__init__(message, field="rows")
        self.rows = rows
        self.more = more


# --- parsing ------------------------------------------------------------------------------------------------


def parse_rows(content: str, fmt: str) -> list[dict[str, Any]]:
    """JSONL or CSV text -> list of dicts (CSV values stay strings; the field types convert them)."""
    if fmt == "jsonl":
        return _parse_jsonl(content)
    if fmt == "csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(content))]
    raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format")


def _parse_jsonl(content: str) -> list[dict[str, Any]]:
    rows = []
    for line in content.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"row {len(rows) + 1}: not valid JSON ({exc.msg})", field="rows") from exc
    return rows


# --- validation ---------------------------------------------------------------------------------------------


def _fields(program: Program) -> tuple[list[Field], list[Field]]:
    return fields_of(parse_spec(program.spec))


def fields_of(spec: ProgramSpec) -> tuple[list[Field], list[Field]]:
    """A program's input fields (those callers supply) and its final output fields (what the metric scores)."""
    by_name: dict[str, Field] = {}
    for predictor in spec.predictors:
        for f in (*predictor.signature.inputs, *predictor.signature.outputs):
            by_name.setdefault(f.name, f)
    outputs = [spec.output_field(name) for name in spec.output_names]
    return [by_name[name] for name in spec.input_names], [f for f in outputs if f is not None]


def _convert(f: Field, value: Any) -> Any:
    """One value checked against (and, from CSV text, converted to) its field's type."""
    if value is None:
        raise _RowError(f"field {f.name!r} has no value")
    if f.type in ("str", "choice"):
        if not isinstance(value, str):
            raise _RowError(f"field {f.name!r} must be a string, got {type(value).__name__}")
        if f.type == "choice" and value not in f.choices:
            raise _RowError(f"field {f.name!r} is {value!r}, not one of {', '.join(f.choices)}")
        return value
    if f.type == "bool":
        return _convert_bool(f, value)
    if f.type == "list[str]":
        return _convert_list(f, value)
    return _convert_number(f, value)


def _convert_bool(f: Field, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _RowError(f"field {f.name!r} must be true or false, got {value!r}")


def _convert_list(f: Field, value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _RowError(f"field {f.name!r} must be a JSON list of strings, got {value!r}") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _RowError(f"field {f.name!r} must be a list of strings")
    return value


def _convert_number(f: Field, value: Any) -> int | float:
    cast = int if f.type == "int" else float
    if isinstance(value, bool):
        raise _RowError(f"field {f.name!r} must be {'an integer' if cast is int else 'a number'}, got {value!r}")
    try:
        number = cast(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if cast is int and isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int if cast is int else (int, float)):
        raise _RowError(f"field {f.name!r} must be {'an integer' if cast is int else 'a number'}, got {value!r}")
    return number


def _validate_row(row: Any, inputs: list[Field], outputs: list[Field]) -> dict[str, dict[str, Any]]:
    """{"inputs": ..., "outputs": ...} of one row with exactly the program's fields, or _RowError."""
    if not isinstance(row, dict):
        raise _RowError(f"expected an object with fields, got {type(row).__name__}")
    expected = [f.name for f in (*inputs, *outputs)]
    for name in expected:
        if name not in row:
            raise _RowError(f"missing field {name!r}")
    if None in row:  # csv.DictReader files surplus cells under the key None
        raise _RowError(f"more values than the header has columns ({', '.join(expected)})")
    extra = [key for key in row if key not in expected]
    if extra:
        raise _RowError(f"unexpected field {extra[0]!r} (expected {', '.join(expected)})")
    record: dict[str, dict[str, Any]] = {"inputs": {}, "outputs": {}}
    for side, fields in (("inputs", inputs), ("outputs", outputs)):
        for f in fields:
            value = _convert(f, row[f.name])
            if side == "outputs" and value in ("", None, []):
                raise _RowError(f"field {f.name!r} (a label) is empty")
            record[side][f.name] = value
    return record


def validate_rows(program: Program, rows: list[Any]) -> list[dict[str, dict[str, Any]]]:
    """Every row checked against the program's fields; bad rows raise BadRows naming each one."""
    if not rows:
        raise InvalidInput("the dataset has no rows", field="rows")
    inputs, outputs = _fields(program)
    records, errors = [], []
    for number, row in enumerate(rows, start=1):
        try:
            records.append(_validate_row(row, inputs, outputs))
        except _RowError as exc:
            errors.append(f"row {number}: {exc}")
    if errors:
        raise BadRows(errors[:MAX_ROW_ERRORS], more=max(0, len(errors) - MAX_ROW_ERRORS))
    return records


def convert_value(f: Field, value: Any) -> Any:
    """One value checked against (and, from form text, converted to) its field's type; InvalidInput naming the
    field otherwise. Demos typed in the portal are checked the way dataset rows are."""
    try:
        return _convert(f, value)
    except _RowError as exc:
        raise InvalidInput(str(exc), field=f.name) from None


# --- actions ------------------------------------------------------------------------------------------------


@transaction.atomic
def import_dataset(program: Program, *, actor: Any, split: str, name: str, rows: list[dict[str, Any]] | str,
                   format: str | None = None, source_filename: str = "") -> Dataset:
    """Import labeled rows (a list of dicts, or JSONL/CSV text with `format`) as one new dataset of `split`.

    The whole import is refused on the first bad row; re-importing identical content for the same split is
    refused too (it would be the same dataset twice).
    """
    require_role(actor, Role.AUTHOR, program, doing="import datasets")
    if split not in Split.values:
        raise InvalidInput(f"split must be one of {', '.join(Split.values)}, got {split!r}", field="split")
    name = require_text(name, field="name", max_length=200)
    if isinstance(rows, str):
        rows = parse_rows(rows, format or "")
    records = validate_rows(program, rows)
    digest = content_hash(records)
    existing = Dataset.objects.filter(program=program, split=split, content_hash=digest).first()
    if existing is not None:
        raise InvalidInput(f"identical dataset already imported as #{existing.pk} ({existing.name})", field="rows")
    dataset = _create_dataset(program, actor=actor, split=split, name=name, digest=digest, count=len(records),
                              source_filename=source_filename)
    Example.objects.bulk_create(
        Example(dataset=dataset, index=i, inputs=r["inputs"], outputs=r["outputs"]) for i, r in enumerate(records))
    record_event("dataset.imported", actor=actor, obj=dataset, program=program, after={
        "name": name, "split": split, "row_count": len(records), "content_hash": digest,
        "source_filename": source_filename})
    return dataset


def _create_dataset(program: Program, *, actor: Any, split: str, name: str, digest: str, count: int,
                    source_filename: str) -> Dataset:
    # A savepoint, so that losing a race to an identical concurrent import surfaces as a clear error.
    try:
        with transaction.atomic():
            return create(Dataset, by=actor, program=program, name=name, split=split, content_hash=digest,
                          row_count=count, source_filename=source_filename[:255], created_by=actor)
    except IntegrityError:
        raise InvalidInput("identical dataset was imported at the same moment", field="rows") from None


def active_datasets(program: Program) -> dict[str, Dataset]:
    """The latest dataset of each split: what runs and evaluations use by default."""
    latest: dict[str, Dataset] = {}
    for dataset in program.datasets.order_by("split", "-created_at", "-id"):
        latest.setdefault(dataset.split, dataset)
    return latest


def examples_for(dataset: Dataset) -> list[dict[str, Any]]:
    """The dataset's rows as flat records (inputs and outputs in one dict), in import order."""
    return [example.as_record() for example in dataset.examples.order_by("index")]
