"""Dataset import: whole-file validation with row numbers, content hashing, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governance.actions import active_datasets, examples_for, import_dataset
from governance.actions.datasets import BadRows
from governance.errors import InvalidInput, PermissionDenied
from governance.models import Dataset, Example
from optimizer.program import content_hash
from tests.governance.conftest import TEST_ROWS

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "demo" / "support_tickets"
ROWS = [{"ticket": "I was charged twice this month", "category": "billing"},
        {"ticket": "Where is my parcel?", "category": "shipping"},
        {"ticket": "Please refund my order", "category": "refund"}]


def _nothing_written(audit) -> None:
    """Only the program fixture's own test dataset exists."""
    assert Dataset.objects.count() == 1 and Example.objects.count() == TEST_ROWS
    assert audit.actions() == []


def test_import_rows_stores_examples_hash_and_audit(program, author, audit):
    dataset = import_dataset(program, actor=author, split="train", name="first batch", rows=ROWS)
    expected_hash = content_hash([{"inputs": {"ticket": r["ticket"]}, "outputs": {"category": r["category"]}}
                                  for r in ROWS])
    assert dataset.content_hash == expected_hash and dataset.row_count == 3
    assert examples_for(dataset) == ROWS
    assert list(dataset.examples.values_list("index", flat=True)) == [0, 1, 2]
    assert audit.actions() == ["dataset.imported"]
    assert audit.events()[0].after == {"name": "first batch", "split": "train", "row_count": 3,
                                       "content_hash": expected_hash, "source_filename": ""}


def test_import_demo_jsonl_file(program, author):
    text = (DEMO / "val.jsonl").read_text()
    dataset = import_dataset(program, actor=author, split="val", name="demo val", rows=text, format="jsonl",
                             source_filename="val.jsonl")
    expected = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert dataset.row_count == len(expected) and examples_for(dataset) == expected


def test_import_csv(program, author):
    text = 'ticket,category\n"Hello, my invoice is wrong",billing\nApp crashes on start,technical\n'
    dataset = import_dataset(program, actor=author, split="test", name="csv", rows=text, format="csv")
    assert examples_for(dataset) == [{"ticket": "Hello, my invoice is wrong", "category": "billing"},
                                     {"ticket": "App crashes on start", "category": "technical"}]


@pytest.mark.parametrize(("rows", "fmt", "message"), [
    (ROWS[:2] + [{"ticket": "x"}], None, "row 3: missing field 'category'"),
    (ROWS[:1] + [{"ticket": "x", "category": "foo"}], None,
     "row 2: field 'category' is 'foo', not one of billing, refund, shipping, account, technical, product_question, feedback"),
    ([{"ticket": "x", "category": "billing", "lang": "en"}], None,
     "row 1: unexpected field 'lang' (expected ticket, category)"),
    ([{"ticket": 42, "category": "billing"}], None, "row 1: field 'ticket' must be a string, got int"),
    ([{"ticket": None, "category": "billing"}], None, "row 1: field 'ticket' has no value"),
    (["just text"], None, "row 1: expected an object with fields, got str"),
    ([], None, "the dataset has no rows"),
    ('{"ticket": "a", "category": "billing"}\n{"ticket": "b", "category": \n', "jsonl", "row 2: not valid JSON"),
    ("ticket,category\nfine,billing\nbroken\n", "csv", "row 2: field 'category' has no value"),
    ("ticket,category\na,billing,extra\n", "csv", "row 1: more values than the header has columns"),
    ("ticket,category\na,Billing\n", "csv", "row 1: field 'category' is 'Billing', not one of billing"),
    ("whatever", "xml", "format must be one of jsonl, csv, got 'xml'"),
])
def test_bad_rows_reject_the_whole_import(program, author, audit, rows, fmt, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_dataset(program, actor=author, split="train", name="bad", rows=rows, format=fmt)
    _nothing_written(audit)


def test_row_number_in_a_long_file(program, author, audit):
    rows = [dict(ROWS[0]) for _ in range(20)]
    del rows[16]["category"]
    with pytest.raises(InvalidInput, match="row 17: missing field 'category'") as info:
        import_dataset(program, actor=author, split="train", name="long", rows=rows)
    assert info.value.field == "rows"
    _nothing_written(audit)


def test_every_bad_row_is_named_up_to_the_limit(program, author, audit):
    rows = [dict(ROWS[0]) for _ in range(40)]
    rows[16]["category"] = "refnd"
    for row in rows[20:]:
        del row["ticket"]
    with pytest.raises(BadRows) as info:
        import_dataset(program, actor=author, split="train", name="long", rows=rows)
    assert info.value.rows[0] == ("row 17: field 'category' is 'refnd', not one of billing, refund, shipping, "
                                  "account, technical, product_question, feedback")
    assert info.value.rows[1:] == [f"row {n}: missing field 'ticket'" for n in range(21, 40)]
    assert info.value.more == 1 and info.value.message.endswith("; and 1 more bad row")
    _nothing_written(audit)


def test_identical_content_for_same_split_is_refused(program, author, audit):
    first = import_dataset(program, actor=author, split="train", name="a", rows=ROWS)
    with pytest.raises(InvalidInput, match=f"identical dataset already imported as #{first.pk} \\(a\\)"):
        import_dataset(program, actor=author, split="train", name="again", rows=list(ROWS))
    other_split = import_dataset(program, actor=author, split="val", name="same rows", rows=ROWS)
    assert other_split.content_hash == first.content_hash
    assert audit.actions() == ["dataset.imported", "dataset.imported"]


def test_import_checks_role_membership_and_split(program, users, audit):
    with pytest.raises(PermissionDenied, match="user 'reviewer1' needs the author role to import datasets"):
        import_dataset(program, actor=users["reviewer1"], split="train", name="x", rows=ROWS)
    with pytest.raises(PermissionDenied, match="user 'outsider' is not a member of program support"):
        import_dataset(program, actor=users["outsider"], split="train", name="x", rows=ROWS)
    with pytest.raises(InvalidInput, match="split must be one of train, val, test, got 'dev'"):
        import_dataset(program, actor=users["author"], split="dev", name="x", rows=ROWS)
    _nothing_written(audit)


def test_active_datasets_are_the_latest_per_split(program, author):
    old_train = import_dataset(program, actor=author, split="train", name="old", rows=ROWS[:2])
    new_train = import_dataset(program, actor=author, split="train", name="new", rows=ROWS)
    val = import_dataset(program, actor=author, split="val", name="val", rows=ROWS[:1])
    test = program.datasets.get(split="test")  # the program fixture's
    assert active_datasets(program) == {"train": new_train, "val": val, "test": test}
    assert old_train.pk != new_train.pk


def test_typed_fields_are_converted_from_csv(author, users):
    from governance.actions import create_program
    spec = {"name": "typed", "predictors": [{"name": "score", "signature": {
        "inputs": [{"name": "text"}, {"name": "n", "type": "int"}, {"name": "tags", "type": "list[str]"}],
        "outputs": [{"name": "ok", "type": "bool"}, {"name": "value", "type": "float"}]}}]}
    program = create_program(actor=author, slug="typed", name="Typed", spec=spec, metric="exact")
    text = 'text,n,tags,ok,value\nhi,3,"[""a"",""b""]",true,0.5\n'
    dataset = import_dataset(program, actor=author, split="train", name="t", rows=text, format="csv")
    assert examples_for(dataset) == [{"text": "hi", "n": 3, "tags": ["a", "b"], "ok": True, "value": 0.5}]
    with pytest.raises(InvalidInput, match="row 1: field 'n' must be an integer, got '3.5'"):
        import_dataset(program, actor=author, split="val", name="t", format="csv",
                       rows='text,n,tags,ok,value\nhi,3.5,[],true,1\n')
    with pytest.raises(InvalidInput, match="row 1: field 'ok' must be true or false, got 'maybe'"):
        import_dataset(program, actor=author, split="val", name="t", format="csv",
                       rows='text,n,tags,ok,value\nhi,3,[],maybe,1\n')
