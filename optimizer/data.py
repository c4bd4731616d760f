"""Examples and the loading of labeled data files (JSONL or CSV) against a program's fields."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimizer.errors import DataError
from optimizer.program import Program


@dataclass(frozen=True)
class Example:
    """One labeled example: the program's inputs and the expected outputs."""

    inputs: dict[str, Any]
    labels: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {**self.inputs, **self.labels}

    def key(self) -> str:
        """A stable identity used to leave an example out of its own demos."""
        return json.dumps(self.inputs, sort_keys=True, ensure_ascii=False)


def examples_from_records(records: Iterable[dict[str, Any]], program: Program, *,
                          source: str = "data", require_labels: bool = True) -> list[Example]:
    """Validate records against the program's fields; the first bad row raises DataError naming it."""
    inputs, outputs = program.input_names, program.output_names
    examples = []
    for row_number, record in enumerate(records, start=1):
        examples.append(_example_from_record(record, inputs, outputs, program,
                                             where=f"{source}: row {row_number}", require_labels=require_labels))
    return examples


def _example_from_record(record: Any, inputs: list[str], outputs: list[str], program: Program, *,
                         where: str, require_labels: bool) -> Example:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object with fields, got {type(record).__name__}")
    unknown = sorted(set(record) - set(inputs) - set(outputs))
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                        f"the program reads {', '.join(inputs)} and produces {', '.join(outputs)}")
    wanted = inputs + (outputs if require_labels else [])
    missing = [name for name in wanted if record.get(name) in (None, "")]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    for name in outputs:
        spec = program.output_field(name)
        if spec is not None and spec.type == "choice" and name in record and record[name] not in spec.choices:
            raise DataError(f"{where}: {record[name]!r} is not one of {', '.join(spec.choices)} (field {name!r})")
    return Example(inputs={k: record[k] for k in inputs}, labels={k: record[k] for k in outputs if k in record})


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a .jsonl or .csv file into dicts; malformed lines raise DataError with the line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_records(text, "csv" if path.suffix.lower() == ".csv" else "jsonl", source=str(path))


def parse_records(text: str, fmt: str, *, source: str = "data") -> list[dict[str, Any]]:
    if fmt == "csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    if fmt != "jsonl":
        raise DataError(f"{source}: unknown format {fmt!r}; expected jsonl or csv")
    records = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: row {line_number}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    return records


def load_examples(path: str | Path, program: Program, *, limit: int | None = None,
                  sample_seed: int | None = None) -> list[Example]:
    """Load and validate a data file; optionally take a seeded random sample of `limit` rows."""
    records = read_records(path)
    examples = examples_from_records(records, program, source=str(path))
    return sample(examples, limit, sample_seed) if limit is not None else examples


def sample(examples: Sequence[Example], limit: int | None, seed: int | None) -> list[Example]:
    if limit is None or limit >= len(examples):
        return list(examples)
    if seed is None:
        return list(examples[:limit])
    return random.Random(seed).sample(list(examples), limit)


def split_train_val(examples: Sequence[Example], *, val_fraction: float, max_val: int,
                    seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out a seeded validation set when the caller gave none (at most `max_val` rows)."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    n_val = min(max_val, max(1, int(len(shuffled) * val_fraction)))
    return shuffled[n_val:], shuffled[:n_val]
