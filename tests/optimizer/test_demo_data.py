"""The support-ticket demo dataset: well-formed rows, exact split sizes, no duplicates, a loadable program."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from optimizer.program import Program

DATA_DIR = Path(__file__).resolve().parents[2] / "demo" / "support_tickets"
CATEGORIES = ("billing", "refund", "shipping", "account", "technical", "product_question", "feedback")
SPLIT_SIZES = {"train": 35, "val": 10, "test": 15}  # rows per category
FILES = (*SPLIT_SIZES, "labeled_batch")


def load_rows(name: str) -> list[dict]:
    rows = []
    path = DATA_DIR / f"{name}.jsonl"
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert line.strip(), f"{path.name}:{lineno} is blank"
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path.name}:{lineno} is not valid JSON: {exc}")
    return rows


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.mark.parametrize("name", FILES)
def test_rows_are_well_formed(name: str) -> None:
    rows = load_rows(name)
    assert rows, f"{name}.jsonl is empty"
    for i, row in enumerate(rows, start=1):
        assert isinstance(row, dict), f"{name}.jsonl row {i} is not an object"
        assert set(row) == {"ticket", "category"}, f"{name}.jsonl row {i} has keys {sorted(row)}"
        assert isinstance(row["ticket"], str) and row["ticket"].strip(), f"{name}.jsonl row {i}: empty ticket"
        assert row["category"] in CATEGORIES, f"{name}.jsonl row {i}: unknown category {row['category']!r}"


@pytest.mark.parametrize(("name", "per_category"), SPLIT_SIZES.items())
def test_split_sizes(name: str, per_category: int) -> None:
    rows = load_rows(name)
    assert len(rows) == per_category * len(CATEGORIES)
    assert Counter(r["category"] for r in rows) == {c: per_category for c in CATEGORIES}


def test_split_totals() -> None:
    assert [len(load_rows(n)) for n in SPLIT_SIZES] == [245, 70, 105]


def test_labeled_batch_covers_every_category() -> None:
    rows = load_rows("labeled_batch")
    assert len(rows) == 40
    counts = Counter(r["category"] for r in rows)
    assert set(counts) == set(CATEGORIES)
    assert all(5 <= n <= 7 for n in counts.values()), counts


def test_no_duplicate_tickets_across_files() -> None:
    seen: dict[str, str] = {}
    for name in FILES:
        for i, row in enumerate(load_rows(name), start=1):
            key = normalize(row["ticket"])
            assert key not in seen, f"{name}.jsonl row {i} duplicates a ticket in {seen[key]}"
            seen[key] = f"{name}.jsonl row {i}"


def test_program_spec_loads_and_matches_categories() -> None:
    program = Program.from_json((DATA_DIR / "program.json").read_text(encoding="utf-8"))
    assert program.name == "support_triage"
    assert [p.name for p in program.predictors] == ["classify"]
    assert program.input_names == ["ticket"]
    assert program.output_names == ["category"]
    field = program.output_field("category")
    assert field is not None and field.type == "choice"
    assert field.choices == CATEGORIES
    assert set(field.choices) == set(CATEGORIES)
    assert program.predictor("classify").demos == ()
