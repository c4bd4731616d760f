"""The reviewer portal end to end, in headless Chromium (Playwright) against pytest-django's live server.

The whole governed flow through the browser: the author starts an optimization run and watches its progress
(the run executes in the server's local pool against the loopback fake LM answering like a small model);
two reviewers wait for the system's evaluation of the change request it opens and approve it, re-entering their
passwords (the page's hidden content hash binds each signature to what it showed); the releaser releases it;
the auditor reads the trail, sees it covered by a signed checkpoint and downloads the CSV; the signed bundle of
the approved version downloads and verifies offline. Along the way: the author sees no approve button and a
forced POST is refused with 403 and the domain message. Screenshots of the main pages go to docs/screenshots/.

Chromium comes from the distribution (/usr/bin/chromium); `playwright install` is never needed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command

from governance.actions import create_version, initial_payload
from governance.models import AuditEvent, ChangeRequest, OptimizationRun, PromptVersion, RunStatus
from optimizer.bundle import verify_bundle

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")

from tests.e2e.portal import (  # noqa: E402  (after the skip: the module needs playwright)
    Portal,
    browser,
    committed,
    expect_text,
    lm_server,
    password,
    portal_settings,
    wait_for_system_evaluation,
    world,
)

FIXTURES = (browser, committed, lm_server, portal_settings, world)  # imported so pytest finds them

# --- the flow -------------------------------------------------------------------------------------------------


def test_run_review_release_audit_export(world, live_server, browser, lm_server, tmp_path):
    program, users = world["program"], world["users"]
    base = live_server.url

    # 1. The author starts a run and watches it progress to a change request.
    author = Portal(browser, base, "author")
    page = author.page
    page.goto(f"/programs/{program.slug}/")
    page.get_by_label("Preset").select_option("light")
    page.get_by_label("Seed").fill("3")
    page.get_by_label("Trials").fill("4")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run = OptimizationRun.objects.get(program=program)
    sync_api.expect(page.locator("#run-progress")).to_have_attribute("max", "100")
    sync_api.expect(page.locator("#run-live")).to_contain_text("of 4 trials")
    # The htmx poll swaps the live part in place; when the run ends the page reloads with its change request.
    sync_api.expect(page.locator("#run-live")).to_contain_text("Succeeded", timeout=150_000)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    sync_api.expect(page.locator("#run-live")).to_contain_text("4 of 4 trials")
    sync_api.expect(page.locator("svg.chart circle.pt-full").first).to_be_visible()
    sync_api.expect(page.locator(".candidate").first).to_be_visible()  # the page reloaded with the results
    assert page.locator("#cancel-run").count() == 0, "a finished run offers no cancel button"
    author.shot("run")
    cr = ChangeRequest.objects.select_related("version").get(version__run=run)
    sync_api.expect(page.locator("#run-live")).to_contain_text(f"CR-{cr.pk}")

    page.goto(f"/programs/{program.slug}/")
    expect_text(page, f"v{cr.version.number}")
    author.shot("program")

    # 2. The author may not approve their own change: no button, and a forced POST is refused (403).
    page.goto(f"/change-requests/{cr.pk}/")
    assert page.locator("#approve-button").count() == 0
    sync_api.expect(page.locator("#why-not")).to_contain_text("needs the reviewer role")
    token = next(c["value"] for c in author.context.cookies() if c["name"] == "csrftoken")
    forced = author.context.request.post(
        f"{base}/change-requests/{cr.pk}/approve/", headers={"X-CSRFToken": token, "Referer": f"{base}/"},
        form={"approve-password": password("author"), "approve-confirm_meaning": "on"})
    assert forced.status == 403
    assert "needs the reviewer role to review change requests" in forced.text()
    author.close()

    # 3. Reviewer 1 finds the request on the dashboard and approves it with their password.
    first = Portal(browser, base, "reviewer1")
    page = first.page
    sync_api.expect(page.locator("main")).to_contain_text(f"CR-{cr.pk}")
    first.shot("dashboard")
    page.get_by_role("link", name=f"Review CR-{cr.pk}").click()
    wait_for_system_evaluation(page)
    sync_api.expect(page.locator("#recommendation")).to_contain_text("Recommended: +")
    shown = page.locator("input[name=approve-content_hash]")  # the hidden field the page came with
    assert shown.input_value() == cr.version.content_hash
    expect_text(page, "What changes")
    sync_api.expect(page.locator("ins.diff-ins, .demo-list.added li").first).to_be_visible()
    # The decision panel is neutral (no decision open) and a few key presses away: the second skip link, then
    # the "Approve and sign" summary, open it, and the password field.
    assert page.locator("details.decision[open]").count() == 0
    page.locator("body").focus()
    for key in ("Tab", "Tab", "Enter", "Tab", "Enter", "Tab"):
        page.keyboard.press(key)
    assert page.evaluate("document.activeElement.name") == "approve-password"
    page.keyboard.type("wrong password")
    page.get_by_label(re.compile("Meaning of my signature")).first.check()
    page.locator("#approve-button").click()
    expect_text(page, "re-authentication failed")  # refused and recorded; nothing signed
    # Focus is on the field in error, and the address bar shows the change request, not the POST-only address.
    assert page.evaluate("document.activeElement.name") == "approve-password"
    assert page.url == f"{base}/change-requests/{cr.pk}/"
    page.get_by_label("Re-enter your password").fill(password("reviewer1"))
    page.get_by_label(re.compile("Meaning of my signature")).first.check()
    page.locator("#approve-button").click()
    expect_text(page, "more approvals are needed")
    first.close()

    # 4. Reviewer 2 sees the first signature's manifestation and gives the final approval.
    second = Portal(browser, base, "reviewer2")
    page = second.page
    page.goto(f"/change-requests/{cr.pk}/")
    wait_for_system_evaluation(page)
    sync_api.expect(page.locator(".signature")).to_contain_text("Ravi Patel")
    expect_text(page, "I approve this prompt version for release")
    expect_text(page, cr.version.content_hash)
    second.shot("change-request")
    page.locator("summary", has_text="Approve and sign").click()  # open the decision (none is open by default)
    page.get_by_label("Re-enter your password").fill(password("reviewer2"))
    page.get_by_label(re.compile("Meaning of my signature")).first.check()
    page.locator("#approve-button").click()
    expect_text(page, "is approved and frozen")
    assert page.locator("#approve-button").count() == 0
    second.close()
    cr.version.refresh_from_db()
    assert cr.version.status == "approved"

    # 5. The releaser releases it to production.
    releaser = Portal(browser, base, "releaser")
    page = releaser.page
    page.goto(f"/programs/{program.slug}/releases/")
    page.get_by_label("Approved version").select_option(value=str(cr.version.pk))
    page.get_by_label("Reason for the release").fill(f"Optimized prompt approved by two reviewers (CR-{cr.pk}).")
    page.locator("#release-button").click()
    expect_text(page, f"Release version {cr.version.number} as production")  # the confirmation: before and after
    releaser.shot("release-confirm")
    page.locator("#confirm-button").click()
    expect_text(page, f"Version {cr.version.number} is now the production version")
    releaser.shot("releases")
    releaser.close()

    # 6. The auditor reads the trail, sees it verified by a signed checkpoint, filters it, and downloads the CSV.
    call_command("audit_checkpoint", stdout=io.StringIO())  # as celery beat would; the page shows its status
    auditor = Portal(browser, base, "auditor", keyboard=True)
    page = auditor.page
    page.keyboard.press("Tab")  # the first stop is the skip link, visible when focused
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_role("link", name="Audit trail").click()
    sync_api.expect(page.locator("#chain-status")).to_contain_text("verified")
    expect_text(page, f"released version {cr.version.number} as production")
    auditor.shot("audit")
    page.get_by_label("Action").fill("review.approved")
    page.get_by_role("button", name="Apply").click()
    sync_api.expect(page.locator(".timeline li")).to_have_count(4)  # two for v1, two for the optimized version
    with page.expect_download() as download:
        page.locator("#csv-link").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [row["action"] for row in rows] == ["review.approved"] * 4
    assert {row["actor_name"] for row in rows} == {"Ravi Patel", "Sofia Rossi"}

    # 7. The signed bundle of the approved version downloads and verifies; an unapproved version offers none.
    page.goto(f"/programs/{program.slug}/versions/{cr.version.number}/")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download signed bundle").click()
    bundle = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    verified = verify_bundle(bundle)
    assert verified.content_hash == cr.version.content_hash
    assert [a["name"] for a in verified.approvals] == ["Ravi Patel", "Sofia Rossi"]
    assert AuditEvent.objects.filter(action="version.exported", actor=users["auditor"]).count() == 1
    draft = create_version(program, actor=users["author"], payload=initial_payload(program), note="a draft")
    page.goto(f"/programs/{program.slug}/versions/{draft.number}/")
    expect_text(page, "Only approved versions can be exported")
    assert page.get_by_role("button", name="Download signed bundle").count() == 0
    auditor.close()
    assert PromptVersion.objects.get(pk=cr.version.pk).status == "approved"
