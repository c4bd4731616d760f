"""Browser test of the compare view: pick versions, ask for the missing evaluation, watch the page fill in, filter.

The fixtures come from tests/e2e/portal.py (world: v1 released on the fake LM, evaluated on the test rows).
"""

from __future__ import annotations

from pathlib import Path

from governance.actions import create_version, initial_payload, open_change_request
from tests.e2e.portal import (  # noqa: F401 - fixtures
    Portal,
    browser,
    committed,
    expect_text,
    lm_server,
    portal_settings,
    sync_api,
    world,
)
from tests.optimizer.simulated import MAGIC

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
  .filter(v => v.impact === "serious" || v.impact === "critical").map(v => v.id + " at " + v.nodes[0].target)"""


def fits_and_passes_axe(page, width: int) -> list[str]:
    """Problems of the page as shown: wider than the viewport, or serious/critical axe violations."""
    problems = []
    if page.evaluate("document.documentElement.scrollWidth") > width:
        problems.append(f"scrollWidth > {width}")
    if AXE.exists():  # scripts/test.sh installs axe-core from npm
        page.add_script_tag(path=str(AXE))
        problems += page.evaluate(SERIOUS)
    return problems


def test_compare_two_versions_in_the_browser(world, live_server, browser):  # noqa: F811 - fixtures
    program, users = world["program"], world["users"]
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["signature"]["instructions"] = f"Classify the ticket as {MAGIC} the categories."
    v2 = create_version(program, actor=users["author"], payload=payload, note="Names the categories.")

    reviewer = Portal(browser, live_server.url, "reviewer1")
    page = reviewer.page
    page.goto(f"/programs/{program.slug}/")
    page.get_by_role("link", name="Compare versions").click()
    # Production (v1) and the newest version (v2) are picked, on the newest test dataset.
    sync_api.expect(page.get_by_label("v1 (approved)")).to_be_checked()
    sync_api.expect(page.get_by_label("v2 (draft)")).to_be_checked()
    page.get_by_role("button", name="Compare").click()
    expect_text(page, "v2: not evaluated on this dataset yet")
    page.get_by_role("button", name="Ask the system to evaluate v2").click()
    expect_text(page, "Asked the system to evaluate v2")
    # The results part polls itself until the evaluation is in, then shows the table.
    sync_api.expect(page.locator("#comparison-totals")).to_be_visible(timeout=120_000)
    expect_text(page, "v2 vs v1:")
    page.locator("#filter-newly_right").click()
    sync_api.expect(page.locator("#filter-newly_right")).to_have_attribute("aria-current", "true")
    rows = page.locator("#aligned-examples tbody tr")
    assert rows.count() > 0 and all("newly right" in row.inner_text() for row in rows.all())
    page.locator("#aligned-examples details summary", has_text="raw output").first.click()
    reviewer.shot("compare")
    # The table with its results fits a phone (it scrolls inside itself) and has no serious accessibility issue.
    assert fits_and_passes_axe(page, 1366) == []
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert fits_and_passes_axe(page, 390) == []
    reviewer.shot("compare-390-dark")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1366, "height": 900})

    # The change request of v2 shows the same comparison (its evaluations are the ones just made: reused).
    cr = open_change_request(v2, actor=users["author"], title="Name the categories")
    page.goto(f"/change-requests/{cr.pk}/?rows=newly_right")
    sync_api.expect(page.locator("#comparison-pairs")).to_contain_text("Candidate v2 vs Production v1:")
    sync_api.expect(page.locator("#filter-newly_right")).to_have_attribute("aria-current", "true")
    page.get_by_role("link", name="Open in the compare view").click()
    sync_api.expect(page.locator("#comparison-totals")).to_be_visible()
    page.go_back()
    page.locator("#fail-h").scroll_into_view_if_needed()
    reviewer.shot("change_request_comparison")
    reviewer.close()
