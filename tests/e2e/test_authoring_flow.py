"""Authoring in the browser, end to end: a new author creates a program from the form, uploads its datasets (a
file with a bad row first, refused with the row named and nothing imported), opens a draft, adds demos picked
from the dataset while the preview shows the prompt, tries the draft in the playground on the loopback fake LM,
and submits it, which opens the change request. Screenshots at desktop size and at 390 px go to the screenshot
folder (docs/screenshots when GOVERNANCE_SCREENSHOTS_DIR points there).
"""

from __future__ import annotations

import json

import pytest

from governance.actions import create_user_with_roles, setup_role_groups
from governance.models import AuditEvent, ChangeRequest, Dataset, PlaygroundCall, Program, PromptVersion

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")

from tests.e2e.portal import (  # noqa: E402  (after the skip: the module needs playwright)
    FAKE_MODEL,
    Portal,
    browser,
    committed,
    expect_text,
    lm_server,
    password,
    portal_settings,
)
from tests.optimizer.simulated import load_rows  # noqa: E402

FIXTURES = (browser, committed, lm_server, portal_settings)  # imported so pytest finds them
PHONE = {"width": 390, "height": 844}
CATEGORIES = "billing, refund, shipping, account, technical, product_question, feedback"


def _jsonl(rows: list[dict[str, str]]) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def _file(name: str, rows: list[dict[str, str]]) -> dict[str, object]:
    return {"name": name, "mimeType": "application/octet-stream", "buffer": _jsonl(rows)}


def _phone_shot(portal: Portal, name: str) -> None:
    portal.page.set_viewport_size(PHONE)
    portal.shot(name)
    portal.page.set_viewport_size({"width": 1366, "height": 900})


def _upload(page, split: str, name: str, file: dict[str, object]) -> None:
    page.get_by_label("Split").select_option(split)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("File (.jsonl or .csv)").set_input_files(file)
    page.get_by_role("button", name="Check and import").click()


@pytest.fixture
def author(committed, portal_settings):
    setup_role_groups()
    return create_user_with_roles(actor=None, username="author", password=password("author"), roles=["author"],
                                  first_name="Alice", last_name="Martin")


def test_create_program_upload_draft_preview_playground_submit(author, live_server, browser, lm_server):
    portal = Portal(browser, live_server.url, "author")
    page = portal.page

    # 1. A program from the form: one predictor, a text input and a choice output.
    page.goto("/programs/")
    page.get_by_role("link", name="New program").click()
    page.get_by_label("Slug").fill("ticket-routing")
    page.get_by_label("Name", exact=True).fill("Ticket routing")
    page.get_by_label("Default model").fill(FAKE_MODEL)
    page.get_by_label("Model endpoint (api_base)").fill(lm_server.url)
    page.locator("#p0-in0-name").fill("ticket")
    page.locator("#p0-out0-name").fill("category")
    page.locator("#p0-out0-choices").fill(CATEGORIES)
    page.get_by_role("button", name="Add output field").click()  # added, then removed again: the form is dynamic
    sync_api.expect(page.locator("#p0-out1-name")).to_be_visible()
    page.locator('[data-rows="p0-out"] [data-row]').nth(1).get_by_role("button", name="Remove field").click()
    page.get_by_label("Instructions").fill("Route the support ticket to the team that handles it.")
    portal.shot("authoring-program-new")
    page.get_by_role("button", name="Create program").click()
    page.wait_for_url("**/programs/ticket-routing/")
    program = Program.objects.get(slug="ticket-routing")
    assert program.lm_config == {"model": FAKE_MODEL, "api_base": lm_server.url}

    # 2. Datasets: a bad row is named and nothing is imported; then the test and train sets.
    page.get_by_role("link", name="Upload a dataset").click()
    bad = load_rows("test")[:20]
    bad[16] = {"ticket": bad[16]["ticket"], "category": "refnd"}
    _upload(page, "test", "test tickets", _file("test.jsonl", bad))
    expect_text(page, f"row 17: field 'category' is 'refnd', not one of {CATEGORIES}")
    assert not Dataset.objects.filter(program=program).exists()
    portal.shot("authoring-dataset-bad-rows")
    _upload(page, "test", "test tickets", _file("test.jsonl", load_rows("test")[:20]))
    page.wait_for_url("**/datasets/*/")
    page.goto(f"/programs/{program.slug}/datasets/new/")
    _upload(page, "train", "train tickets", _file("train.jsonl", load_rows("train")[:60]))
    page.wait_for_url("**/datasets/*/")
    page.get_by_label("Search inputs and labels").fill("refund")
    page.get_by_role("button", name="Search").click()
    expect_text(page, "rows match")
    portal.shot("authoring-dataset")

    # 3. A draft from the spec; two demos picked from the dataset; the preview follows every change.
    page.goto(f"/programs/{program.slug}/")
    page.get_by_label("New draft from").select_option("")
    page.get_by_role("button", name="New draft").click()
    page.wait_for_url("**/versions/1/edit/")
    preview = page.locator('#preview pre[data-prompt="classify"]')
    sync_api.expect(preview).to_contain_text("Route the support ticket")
    page.get_by_label("Instructions").fill("Route the ticket to one team. Answer with the team's name only.")
    sync_api.expect(preview).to_contain_text("Answer with the team's name only.")
    picker = page.locator("#pick-0")
    train = load_rows("train")
    for row in (0, 1):
        picker.select_option(str(row))
        page.get_by_role("button", name="Add row as demo").click()
    sync_api.expect(page.locator("[data-demo]")).to_have_count(2)
    sync_api.expect(preview).to_contain_text(f"Ticket: {train[1]['ticket']}\nCategory: {train[1]['category']}")
    page.locator("[data-demo]").nth(1).get_by_role("button", name="Move up").click()  # the second comes first
    first = f"Ticket: {train[1]['ticket']}"
    sync_api.expect(preview).to_contain_text(f"{first}\nCategory: {train[1]['category']}\n\nTicket: {train[0]['ticket']}")
    page.get_by_label("Reason for this change").fill("Two demos from the training set.")
    portal.shot("authoring-draft-editor")
    _phone_shot(portal, "authoring-draft-editor-390")
    shown = preview.inner_text()
    page.get_by_role("button", name="Save draft").click()
    expect_text(page, "Draft v1 saved.")
    draft = PromptVersion.objects.get(program=program, number=1)
    demos = draft.payload["program"]["predictors"][0]["demos"]
    assert demos == [{"ticket": train[1]["ticket"], "category": train[1]["category"]},
                     {"ticket": train[0]["ticket"], "category": train[0]["category"]}]

    # 4. The playground: the prompt sent is the preview's, byte for byte; the call is recorded, never evidence.
    page.get_by_role("link", name="Playground").click()
    ticket = load_rows("test")[0]["ticket"]
    page.get_by_label("Ticket").fill(ticket)
    sent_before = len(lm_server.requests)
    page.get_by_role("button", name="Run").click(no_wait_after=True)
    # The server's first LM call imports litellm (seconds of CPU, more on this loaded machine): wait for it.
    sync_api.expect(page.locator("#result")).to_contain_text("Parsed fields", timeout=90_000)
    call = PlaygroundCall.objects.get()
    assert lm_server.requests[sent_before]["prompt"] == call.steps[0]["prompt"]
    assert call.steps[0]["prompt"].rsplit("\n\nTicket: ", 1)[0] == shown.rsplit("\n\nTicket: ", 1)[0]
    sync_api.expect(page.locator('pre[data-raw="classify"]')).to_have_text(call.steps[0]["raw"])
    portal.shot("authoring-playground")
    _phone_shot(portal, "authoring-playground-390")

    # 5. Submit: the change request opens as it always did.
    page.goto(f"/programs/{program.slug}/versions/1/")
    page.get_by_text("Submit for review").click()
    page.get_by_label("Title").fill("Hand-picked demos")
    page.get_by_role("button", name="Open change request").click()
    page.wait_for_url("**/change-requests/*/")
    cr = ChangeRequest.objects.get(version=draft)
    assert cr.title == "Hand-picked demos"
    actions = list(AuditEvent.objects.filter(program=program).order_by("id").values_list("action", flat=True))
    assert actions[:5] == ["program.created", "dataset.imported", "dataset.imported", "version.created",
                           "version.edited"]
    assert "playground.called" in actions and "change_request.opened" in actions
    portal.close()
