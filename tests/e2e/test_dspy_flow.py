"""DSPy files in the browser: an author imports a file written by dspy on the program page (a file for other
fields first, refused on the form with the fields named and nothing written), lands on the new draft; a reviewer
downloads an approved version as DSPy JSON, which dspy loads. Screenshots go to the screenshot folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from governance.models import PromptVersion, VersionOrigin

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm must not fetch its cost map
dspy = pytest.importorskip("dspy")

from tests.e2e.portal import (  # noqa: E402  (after the skips)
    FAKE_MODEL,
    Portal,
    browser,
    committed,
    expect_text,
    lm_server,
    portal_settings,
    world,
)

FIXTURES = (browser, committed, lm_server, portal_settings, world)  # imported so pytest finds them


def _saved(module: object, path: Path) -> Path:
    module.save(path)  # type: ignore[attr-defined]
    return path


def test_import_a_dspy_file_and_export_an_approved_version(world, live_server, browser, tmp_path):
    program, v1 = world["program"], world["v1"]
    tuned = dspy.Predict("ticket -> category")
    tuned.signature = tuned.signature.with_instructions("Route the ticket to the team that handles it.")
    tuned.demos = [dspy.Example(ticket="I was charged twice for my order", category="billing")]
    tuned.lm = dspy.LM(FAKE_MODEL, model_type="text", temperature=0.0, max_tokens=32)
    good = _saved(tuned, tmp_path / "support.json")
    other = _saved(dspy.Predict("question -> answer"), tmp_path / "qa.json")

    author = Portal(browser, live_server.url, "author")
    page = author.page
    page.goto(f"/programs/{program.slug}/")
    page.get_by_label("DSPy file", exact=True).set_input_files(str(other))
    page.get_by_role("button", name="Import as a draft").click()
    expect_text(page, "was written for fields question, answer, but predictor 'classify' has fields ticket, category")
    page.locator("#dspy-import-h").scroll_into_view_if_needed()
    author.shot("dspy-import-refused")
    assert not PromptVersion.objects.filter(program=program, origin=VersionOrigin.DSPY_IMPORT).exists()

    page.get_by_label("DSPy file", exact=True).set_input_files(str(good))
    page.get_by_role("button", name="Import as a draft").click()
    page.wait_for_url(f"**/programs/{program.slug}/versions/2/")
    expect_text(page, "Draft version 2 imported from support.json.")
    expect_text(page, "Route the ticket to the team that handles it.")
    draft = PromptVersion.objects.get(program=program, number=2)
    assert (draft.origin, draft.payload["lm"]["max_tokens"]) == (VersionOrigin.DSPY_IMPORT, 32)
    author.close()

    reviewer = Portal(browser, live_server.url, "reviewer1")
    page = reviewer.page
    page.goto(f"/programs/{program.slug}/versions/{v1.number}/")
    page.get_by_label("Layout").select_option("bare")
    page.locator("#export-h").scroll_into_view_if_needed()
    reviewer.shot("dspy-export")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export DSPy JSON").click()
    assert download.value.suggested_filename == f"{program.slug}-v{v1.number}.dspy.json"
    download.value.save_as(tmp_path / "exported.json")  # dspy's load picks the format by the suffix
    loaded = dspy.Predict("ticket -> category")
    loaded.load(tmp_path / "exported.json")
    assert loaded.signature.instructions == v1.payload["program"]["predictors"][0]["signature"]["instructions"]
    assert loaded.lm.model == v1.payload["lm"]["model"]
    reviewer.close()
