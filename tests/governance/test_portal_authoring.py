"""Authoring in the portal with Django's test client: programs, datasets, drafts with the prompt preview, the
playground. Every write goes through the actions (audited); refusals write nothing."""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from governance.actions import create_version, import_dataset
from governance.models import AuditEvent, Dataset, Example, PlaygroundCall, Program, PromptVersion, VersionStatus
from governance.portal_authoring import payload_from_post
from optimizer import ProgramSpec, render_prompts
from tests.governance.conftest import payload_with

pytestmark = pytest.mark.django_db

TICKET = "My parcel never arrived"
PROGRAM_FORM = {
    "slug": "sentiment", "name": "Sentiment", "description": "Review polarity.", "metric": "choice", "model": "",
    "p0-name": "classify", "p0-kind": "predict", "p0-instructions": "Is the review positive or negative?",
    "p0-in0-name": "review", "p0-in0-type": "str", "p0-in0-description": "A product review.",
    "p0-out0-name": "label", "p0-out0-type": "choice", "p0-out0-choices": "positive, negative",
}


def _login(client, user):
    client.force_login(user)
    return client


def _events(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


# --- programs -----------------------------------------------------------------------------------------------


def test_a_program_is_created_from_the_form_rows(client, author):
    response = _login(client, author).post("/programs/new/", PROGRAM_FORM)
    assert response.status_code == 302 and response["Location"] == "/programs/sentiment/"
    spec = ProgramSpec.from_dict(Program.objects.get(slug="sentiment").spec)
    output = spec.predictors[0].signature.outputs[0]
    assert (output.name, output.type, output.choices) == ("label", "choice", ("positive", "negative"))
    assert spec.predictors[0].instructions == "Is the review positive or negative?"
    assert _events("program.created") == 1


def test_a_program_is_created_from_an_uploaded_spec(client, author, program):
    upload = SimpleUploadedFile("spec.json", json.dumps(program.spec).encode(), content_type="application/json")
    response = _login(client, author).post("/programs/new/", {**{k: v for k, v in PROGRAM_FORM.items()
                                                                 if not k.startswith("p0")},
                                                              "slug": "from-file", "spec_file": upload})
    assert response.status_code == 302
    assert Program.objects.get(slug="from-file").spec == program.spec


def test_a_bad_program_form_is_refused_with_the_reason_and_its_rows_kept(client, author):
    posted = {**PROGRAM_FORM, "p0-out0-choices": ""}
    response = _login(client, author).post("/programs/new/", posted)
    assert response.status_code == 400
    assert "type &#x27;choice&#x27; needs a non-empty list of choices" in response.content.decode()
    assert 'value="review"' in response.content.decode()  # the rows come back as typed
    assert not Program.objects.filter(slug="sentiment").exists() and _events("program.created") == 0


def test_only_authors_create_programs(client, reviewer1):
    assert _login(client, reviewer1).post("/programs/new/", PROGRAM_FORM).status_code == 403
    assert not Program.objects.filter(slug="sentiment").exists()


# --- datasets -----------------------------------------------------------------------------------------------


def _jsonl(rows: list[tuple[str, str]]) -> bytes:
    return "\n".join(f'{{"ticket": "{t}", "category": "{c}"}}' for t, c in rows).encode()


def test_an_upload_with_bad_rows_lists_each_and_imports_nothing(client, author, program):
    rows = [("charged twice", "billing")] * 16 + [("refund me", "refnd")] + [("hello", "billing")] * 3
    rows[18] = ("lost", "shiping")
    before = (Dataset.objects.count(), Example.objects.count(), _events("dataset.imported"))
    response = _login(client, author).post(f"/programs/{program.slug}/datasets/new/", {
        "split": "train", "name": "tickets", "file": SimpleUploadedFile("tickets.jsonl", _jsonl(rows))})
    assert response.status_code == 400
    page = response.content.decode()
    assert "row 17: field &#x27;category&#x27; is &#x27;refnd&#x27;, not one of billing, refund" in page
    assert "row 19: field &#x27;category&#x27; is &#x27;shiping&#x27;" in page
    assert (Dataset.objects.count(), Example.objects.count(), _events("dataset.imported")) == before


def test_an_upload_is_imported_and_browsed_with_search_pages_and_label_counts(client, author, program):
    rows = [(f"ticket number {n}", "billing" if n % 3 else "refund") for n in range(30)]
    csv = "ticket,category\n" + "\n".join(f"{t},{c}" for t, c in rows)
    response = _login(client, author).post(f"/programs/{program.slug}/datasets/new/", {
        "split": "train", "name": "csv tickets", "file": SimpleUploadedFile("t.csv", csv.encode())})
    dataset = Dataset.objects.get(name="csv tickets")
    assert response.status_code == 302 and dataset.row_count == 30 and dataset.source_filename == "t.csv"
    page = client.get(f"/programs/{program.slug}/datasets/{dataset.pk}/").content.decode()
    assert "Page 1 of 2" in page and "ticket number 24" in page and "ticket number 25" not in page
    counts = re.search(r'id="label-counts".*?</section>', page, re.S).group(0)
    assert re.search(r"<code>billing</code></td><td class=\"num\">20<", counts)
    assert re.search(r"<code>refund</code></td><td class=\"num\">10<", counts)
    assert re.search(r"<code>shipping</code></td><td class=\"num\">0<", counts)  # a choice with no row
    found = client.get(f"/programs/{program.slug}/datasets/{dataset.pk}/", {"q": "number 2"}).content.decode()
    assert "11 rows match" in found and "ticket number 29" in found and "ticket number 3<" not in found


def test_only_authors_upload(client, reviewer1, program):
    response = _login(client, reviewer1).post(f"/programs/{program.slug}/datasets/new/", {
        "split": "train", "name": "x", "file": SimpleUploadedFile("x.jsonl", _jsonl([("a", "billing")]))})
    assert response.status_code == 403 and not Dataset.objects.filter(name="x").exists()


# --- drafts -------------------------------------------------------------------------------------------------


def _editor_post(version, **changes):
    """The editor's fields for `version` as the page sends them, with `changes`."""
    predictor = version.payload["program"]["predictors"][0]
    lm = version.payload["lm"]
    return {"p0-instructions": predictor["signature"]["instructions"], "lm-model": lm["model"],
            "lm-temperature": str(lm["temperature"]), "lm-max_tokens": str(lm["max_tokens"]), "lm-mode": "auto",
            "note": version.note, **changes}


def test_a_draft_is_created_from_a_version_and_edited_with_demos_in_posted_order(client, author, make_version,
                                                                                  program):
    base = make_version(instructions="Route it.")
    response = _login(client, author).post(f"/programs/{program.slug}/drafts/", {"base": base.number})
    draft = PromptVersion.objects.get(program=program, parent=base)
    assert response["Location"] == f"/programs/{program.slug}/versions/{draft.number}/edit/"
    assert draft.status == VersionStatus.DRAFT and draft.payload == base.payload
    posted = _editor_post(draft, **{
        "p0-instructions": "Route the ticket to one team.",
        "p0-d5-ticket": "refund me now", "p0-d5-category": "refund",       # posted second by index: order kept
        "p0-d2-ticket": "charged twice", "p0-d2-category": "billing",
        "p0-d7-ticket": "dropped", "p0-d7-category": "account", "p0-d7-remove": "1",
        "p0-d9-ticket": "", "p0-d9-category": "",                           # an empty new row
        "lm-temperature": "0.2", "reason": "hand-picked demos"})
    response = client.post(f"/programs/{program.slug}/versions/{draft.number}/edit/", posted)
    assert response.status_code == 302
    draft.refresh_from_db()
    predictor = draft.payload["program"]["predictors"][0]
    assert predictor["demos"] == [{"ticket": "charged twice", "category": "billing"},
                                  {"ticket": "refund me now", "category": "refund"}]
    assert predictor["signature"]["instructions"] == "Route the ticket to one team."
    assert draft.payload["lm"]["temperature"] == 0.2
    event = AuditEvent.objects.filter(action="version.edited").latest("id")
    assert event.reason == "hand-picked demos" and event.after["content_hash"] == draft.content_hash


def test_a_bad_demo_is_refused_naming_it_and_nothing_changes(client, author, make_version, program):
    draft = make_version()
    before = draft.content_hash
    response = _login(client, author).post(f"/programs/{program.slug}/versions/{draft.number}/edit/",
                                           _editor_post(draft, **{"p0-d0-ticket": "x", "p0-d0-category": "nope"}))
    assert response.status_code == 400
    assert "classify, demo 1: field &#x27;category&#x27; is &#x27;nope&#x27;, not one of" in response.content.decode()
    draft.refresh_from_db()
    assert draft.content_hash == before and _events("version.edited") == 0


def test_only_the_author_edits_and_only_a_draft(client, users, author, make_version, make_cr, program):
    author2 = users["author2"]
    draft = make_version()
    url = f"/programs/{program.slug}/versions/{draft.number}/edit/"
    assert _login(client, author2).get(url).status_code == 403
    assert client.post(url, _editor_post(draft, **{"p0-instructions": "mine now"})).status_code == 403
    in_review = make_cr(evaluated=False).version
    response = _login(client, author).post(f"/programs/{program.slug}/versions/{in_review.number}/edit/",
                                           _editor_post(in_review, **{"p0-instructions": "late change"}))
    assert response.status_code == 409 and "only draft versions can be edited" in response.content.decode()
    assert _events("version.edited") == 0


def test_the_preview_is_the_adapters_rendering_of_the_unsaved_content(client, author, make_version, program):
    draft = make_version()
    posted = _editor_post(draft, **{"p0-instructions": "Unsaved words.", "in-ticket": TICKET,
                                    "p0-d0-ticket": "charged twice", "p0-d0-category": "billing"})
    page = _login(client, author).post(f"/programs/{program.slug}/versions/{draft.number}/preview/",
                                       posted).content.decode()
    expected = render_prompts(ProgramSpec.from_dict(payload_from_post(draft, posted)["program"]),
                              {"ticket": TICKET}, chat=False)[0].prompt
    shown = re.search(r'<pre class="key-block" data-prompt="classify">(.*?)</pre>', page, re.S).group(1)
    assert shown.replace("&#x27;", "'") == expected
    assert expected.startswith("Unsaved words.\n\nTicket: charged twice\nCategory: billing\n\nTicket: " + TICKET)
    draft.refresh_from_db()
    assert "Unsaved words." not in str(draft.payload)  # a preview saves nothing


# --- playground ---------------------------------------------------------------------------------------------


def test_the_playground_shows_the_prompt_sent_and_records_the_call(client, reviewer1, make_version, program,
                                                                    eval_lm_server):
    version = make_version(instructions="Route it.")
    seen = len(eval_lm_server.requests)
    response = _login(client, reviewer1).post(f"/programs/{program.slug}/versions/{version.number}/playground/",
                                              {"model": version.payload["lm"]["model"], "in-ticket": TICKET})
    assert response.status_code == 200
    call = PlaygroundCall.objects.get()
    sent = eval_lm_server.requests[seen:]
    assert [body["prompt"] for body in sent] == [call.steps[0]["prompt"]]
    page = response.content.decode()
    shown = re.search(r'<pre class="key-block" data-prompt="classify">(.*?)</pre>', page, re.S).group(1)
    assert shown.replace("&#x27;", "'") == sent[0]["prompt"]
    assert f'data-raw="classify">{call.steps[0]["raw"]}' in page and "Parsed fields" in page
    assert call.user == reviewer1 and _events("playground.called") == 1


def test_the_playground_refuses_outsiders_and_empty_inputs(client, auditor, author, make_version, program):
    version = make_version()
    url = f"/programs/{program.slug}/versions/{version.number}/playground/"
    assert _login(client, auditor).get(url).status_code == 403
    response = _login(client, author).post(url, {"model": version.payload["lm"]["model"], "in-ticket": " "})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    assert PlaygroundCall.objects.count() == 0


@pytest.mark.parametrize(("changes", "message"), [
    ({"lm-temperature": "hot"}, "LM temperature must be a number, got &#x27;hot&#x27;"),
    ({"lm-mode": "telepathy"}, "LM prompt format must be one of auto, completion, chat"),
    ({"lm-model": ""}, "payload.lm.model must be a non-empty model string"),
])
def test_bad_lm_settings_are_refused_and_nothing_changes(client, author, make_version, program, changes, message):
    draft = make_version()
    response = _login(client, author).post(f"/programs/{program.slug}/versions/{draft.number}/edit/",
                                           _editor_post(draft, **changes))
    assert response.status_code == 400 and message in response.content.decode()
    assert _events("version.edited") == 0


def test_the_playground_runs_a_dataset_row_and_shows_its_label(client, author, make_version, program):
    version = make_version()
    example = program.datasets.get().examples.order_by("index")[2]
    response = _login(client, author).post(f"/programs/{program.slug}/versions/{version.number}/playground/", {
        "model": version.payload["lm"]["model"], "in-ticket": example.inputs["ticket"], "example": example.pk})
    call = PlaygroundCall.objects.get()
    assert call.example == example and call.inputs == example.inputs
    page = response.content.decode()
    assert "Expected (dataset row 3)" in page and example.outputs["category"] in page


def test_reviewers_create_no_drafts(client, reviewer1, make_version, program):
    base = make_version()
    response = _login(client, reviewer1).post(f"/programs/{program.slug}/drafts/", {"base": base.number})
    assert response.status_code == 403 and "needs the author role" in response.content.decode()
    assert PromptVersion.objects.filter(program=program).count() == 1


def test_the_authoring_pages_run_a_fixed_number_of_queries(client, author, make_version, program,
                                                          django_assert_max_num_queries):
    """The dataset page and the editor do not grow with rows or demos (no N+1)."""
    rows = [{"ticket": f"ticket {n}", "category": "billing"} for n in range(120)]
    import_dataset(program, actor=author, split="train", name="many", rows=rows)
    dataset = Dataset.objects.get(name="many")
    payload = payload_with(program, "Route it.")
    payload["program"]["predictors"][0]["demos"] = rows[:30]
    draft = create_version(program, actor=author, payload=payload)
    _login(client, author)
    for url in (f"/programs/{program.slug}/datasets/{dataset.pk}/?q=ticket",
                f"/programs/{program.slug}/versions/{draft.number}/edit/",
                f"/programs/{program.slug}/versions/{draft.number}/playground/"):
        with django_assert_max_num_queries(16):
            assert client.get(url).status_code == 200, url


def test_a_two_stage_program_from_the_form_and_a_preview_with_placeholders(client, author):
    posted = {**PROGRAM_FORM, "slug": "two-stage",
              "p1-name": "reply", "p1-kind": "chain_of_thought", "p1-instructions": "Answer the review.",
              "p1-in0-name": "review", "p1-in0-type": "str", "p1-in1-name": "label", "p1-in1-type": "str",
              "p1-out0-name": "answer", "p1-out0-type": "str"}
    assert _login(client, author).post("/programs/new/", posted).status_code == 302
    program = Program.objects.get(slug="two-stage")
    spec = ProgramSpec.from_dict(program.spec)
    assert [(p.name, p.kind) for p in spec.predictors] == [("classify", "predict"), ("reply", "chain_of_thought")]
    assert spec.input_names == ["review"] and spec.output_names == ["answer"]
    client.post(f"/programs/{program.slug}/drafts/", {"base": ""})
    page = client.get(f"/programs/{program.slug}/versions/1/edit/").content.decode()
    assert "Label: &lt;label from classify&gt;\nReasoning:" in page  # the first predictor's output, not typed
