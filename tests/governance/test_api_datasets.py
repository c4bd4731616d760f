"""API: dataset upload (multipart file, JSONL/CSV text, JSON rows) with row-level errors, list, examples."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from governance.models import AuditEvent, Dataset
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

ROWS = [{"ticket": "I was charged twice", "category": "billing"},
        {"ticket": "Where is my parcel?", "category": "shipping"},
        {"ticket": "App crashes on start", "category": "technical"}]


def jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_multipart_jsonl_upload(api, program, author):
    upload = SimpleUploadedFile("train.jsonl", jsonl(ROWS).encode(), content_type="application/x-ndjson")
    response = api(author).post(f"{V1}/datasets/", {"program": "support", "name": "first", "split": "train",
                                                     "file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["row_count"], body["split"], body["source_filename"], body["program"]) == (3, "train", "train.jsonl",
                                                                                          "support")
    dataset = Dataset.objects.get(pk=body["id"])
    assert [e.as_record() for e in dataset.examples.order_by("index")] == ROWS
    assert AuditEvent.objects.filter(action="dataset.imported", object_id=str(dataset.pk)).count() == 1
    examples = results(api(author).get(f"{V1}/datasets/{dataset.pk}/examples/"))
    assert [e["outputs"] for e in examples] == [{"category": "billing"}, {"category": "shipping"},
                                                 {"category": "technical"}]


def test_csv_text_and_json_rows(api, program, author):
    csv_text = "ticket,category\nI was charged twice,billing\nRefund please,refund\n"
    csv_response = api(author).post(f"{V1}/datasets/", {"program": "support", "name": "csv", "split": "val",
                                                         "content": csv_text, "format": "csv"}, format="json")
    assert csv_response.status_code == 201 and csv_response.json()["row_count"] == 2
    rows_response = api(author).post(f"{V1}/datasets/", {"program": "support", "name": "rows", "split": "test",
                                                          "rows": ROWS}, format="json")
    assert rows_response.status_code == 201 and rows_response.json()["row_count"] == 3


def test_bad_row_is_a_400_naming_the_row_and_nothing_is_imported(api, program, author):
    rows = ROWS * 5 + [{"ticket": "no label"}] + ROWS
    upload = SimpleUploadedFile("bad.jsonl", jsonl(rows).encode())
    response = api(author).post(f"{V1}/datasets/", {"program": "support", "name": "bad", "split": "train",
                                                     "file": upload}, format="multipart")
    assert error(response) == {"status": 400, "code": "invalid", "field": "rows",
                               "detail": "row 16: missing field 'category'",
                               "errors": {"rows": ["row 16: missing field 'category'"]}}
    assert not Dataset.objects.filter(split="train").exists()  # only the program fixture's test set
    garbage = api(author).post(f"{V1}/datasets/", {"program": "support", "name": "g", "split": "train",
                                                    "content": "{not json\n", "format": "jsonl"}, format="json")
    assert garbage.json()["field"] == "rows" and garbage.json()["detail"].startswith("row 1: not valid JSON")


def test_upload_shape_errors(api, program, author):
    client = api(author)
    both = client.post(f"{V1}/datasets/", {"program": "support", "name": "x", "split": "train", "rows": ROWS,
                                           "content": "a"}, format="json")
    assert both.json()["field"] == "rows" and both.json()["detail"] == "rows: give exactly one of file, content or rows"
    split = client.post(f"{V1}/datasets/", {"program": "support", "name": "x", "split": "holdout", "rows": ROWS},
                        format="json")
    assert split.json()["field"] == "split"
    unnamed = SimpleUploadedFile("data.txt", b"ticket,category\n")
    fmt = client.post(f"{V1}/datasets/", {"program": "support", "name": "x", "split": "train", "file": unnamed},
                      format="multipart")
    assert fmt.json()["field"] == "format"


def test_wrong_users(api, program, outsider, reviewer1):
    # A program the user cannot see does not exist for them: a field error, no hint that it exists.
    hidden = api(outsider).post(f"{V1}/datasets/", {"program": "support", "name": "x", "split": "train",
                                                     "rows": ROWS}, format="json")
    assert hidden.status_code == 400 and hidden.json()["field"] == "program"
    assert error(api(reviewer1).post(f"{V1}/datasets/", {"program": "support", "name": "x", "split": "train",
                                                          "rows": ROWS}, format="json")) == {
        "status": 403, "code": "permission_denied",
        "detail": "user 'reviewer1' needs the author role to import datasets on program support"}


def test_list_hides_other_programs_and_pins_queries(api, program, author, outsider, django_assert_max_num_queries):
    from governance.actions import import_dataset

    for i in range(6):
        import_dataset(program, actor=author, split="train", name=f"d{i}", rows=ROWS[: 1 + i % 3] + [
            {"ticket": f"ticket {i}", "category": "feedback"}])
    dataset = Dataset.objects.first()
    assert results(api(outsider).get(f"{V1}/datasets/")) == []
    assert api(outsider).get(f"{V1}/datasets/{dataset.pk}/").status_code == 404
    client = api(author)
    with django_assert_max_num_queries(4):
        assert len(results(client.get(f"{V1}/datasets/?program=support&split=train"))) == 6


def test_the_command_line_gives_the_apis_row_messages(api, program, author, tmp_path):
    """`manage.py import_dataset` goes through the same action: the same messages, nothing imported."""
    rows = ROWS * 5 + [{"ticket": "x", "category": "refnd"}, {"ticket": "no label"}] + ROWS
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl(rows))
    response = api(author).post(f"{V1}/datasets/", {"program": "support", "name": "bad", "split": "train",
                                                     "content": jsonl(rows), "format": "jsonl"}, format="json")
    expected = ["row 16: field 'category' is 'refnd', not one of billing, refund, shipping, account, technical, "
                "product_question, feedback", "row 17: missing field 'category'"]
    assert response.json()["detail"] == "; ".join(expected)
    with pytest.raises(CommandError) as info:
        call_command("import_dataset", "support", str(path), split="train", actor="author")
    assert str(info.value) == "nothing imported; bad rows:\n" + "\n".join(expected)
    assert not Dataset.objects.filter(split="train").exists()
    path.write_text(jsonl(ROWS))
    out = io.StringIO()
    call_command("import_dataset", "support", str(path), split="train", actor="author", stdout=out)
    assert out.getvalue().startswith("imported 3 rows into support as dataset #")
    assert Dataset.objects.get(split="train").source_filename == "bad.jsonl"
