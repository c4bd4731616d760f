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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from governance.actions import (
    approve_change_request,
    create_program,
    create_user_with_roles,
    create_version,
    import_dataset,
    initial_payload,
    open_change_request,
    release_version,
    setup_role_groups,
)
from governance.models import AuditEvent, ChangeRequest, OptimizationRun, PromptVersion, RunStatus
from optimizer.bundle import generate_private_key, private_key_pem, verify_bundle
from tests.governance.conftest import flush_past_integrity_triggers
from tests.governance.export_helpers import evaluate
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import DEMO_DIR, SimulatedClassifier, load_rows

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
FAKE_MODEL = "text-completion-openai/fake"
SIZES = {"train": 60, "val": 20, "test": 20}  # slices of the demo data: a run costs a few hundred fake calls
VIEWPORT = {"width": 1366, "height": 900}  # a laptop

USERS = {  # username -> (first, last, roles)
    "author": ("Alice", "Martin", ["author"]),
    "reviewer1": ("Ravi", "Patel", ["reviewer"]),
    "reviewer2": ("Sofia", "Rossi", ["reviewer"]),
    "releaser": ("Lena", "Park", ["releaser"]),
    "auditor": ("Omar", "Haddad", ["auditor"]),
}


def password(username: str) -> str:
    return f"{username}-Secret-42"


sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")
if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed (apt-get install -y chromium)", allow_module_level=True)


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture
def committed(transactional_db) -> Iterator[None]:
    """Committed rows (the live server, the run pool and the evaluation jobs read them from other threads); the
    integrity triggers are lifted only to empty the database afterwards (SQLite refuses the flush). The test
    database is a file (tests/conftest.py), so those threads wait on SQLite's busy timeout, never fail at once."""
    yield
    flush_past_integrity_triggers()


@pytest.fixture
def lm_server() -> Iterator[FakeLMServer]:
    with FakeLMServer(SimulatedClassifier(min_demos=14)) as server:
        yield server


@pytest.fixture
def portal_settings(settings, tmp_path, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "lm_cache.sqlite3")
    settings.GOVERNANCE_OPTUNA_STORAGE = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    settings.GOVERNANCE_RUN_HEARTBEAT_SECONDS = 3600  # per-trial heartbeats only: fewer concurrent SQLite writers
    settings.CELERY_BROKER_URL = ""
    key = tmp_path / "signing_key.pem"
    key.write_bytes(private_key_pem(generate_private_key()))
    key.chmod(0o600)
    settings.GOVERNANCE_SIGNING_KEY_PATH = key
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    monkeypatch.setenv("GOVERNANCE_LM_API_KEY", "x")
    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test body are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    return settings


@pytest.fixture
def world(committed, portal_settings, lm_server) -> dict[str, Any]:
    """Users, the support-ticket program on the fake LM, its datasets, and baseline v1 evaluated by the system,
    approved and released, all through the real actions."""
    setup_role_groups()
    users = {name: create_user_with_roles(actor=None, username=name, password=password(name), roles=roles,
                                          first_name=first, last_name=last)
             for name, (first, last, roles) in USERS.items()}
    program = create_program(
        actor=users["author"], slug="support-triage", name="Support ticket triage",
        spec=json.loads((DEMO_DIR / "program.json").read_text()), metric="choice",
        description="Route a customer support ticket to the team that handles it.",
        lm_config={"model": FAKE_MODEL, "api_base": lm_server.url},
        members=[users["reviewer1"], users["reviewer2"], users["releaser"]])
    for split, size in SIZES.items():
        import_dataset(program, actor=users["author"], split=split, name=f"support tickets ({split})",
                       rows=load_rows(split)[:size])
    v1 = create_version(program, actor=users["author"], payload=initial_payload(program),
                        note="Baseline: hand-written instructions.")
    cr = evaluate(open_change_request(v1, actor=users["author"], title="Baseline", impact="low"))
    for name in ("reviewer1", "reviewer2"):
        approve_change_request(cr, actor=users[name], password=password(name), content_hash=v1.content_hash)
        cr.refresh_from_db()
    v1.refresh_from_db()
    release_version(v1, actor=users["releaser"], reason="Baseline release.")
    return {"users": users, "program": program, "v1": v1}


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Portal:
    """One signed-in user's browser tab against the live server."""

    def __init__(self, browser: Any, base_url: str, username: str, *, keyboard: bool = False) -> None:
        self.context = browser.new_context(base_url=base_url, viewport=VIEWPORT, accept_downloads=True)
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.username = username
        self.page.goto("/login/")
        if keyboard:  # keyboard only: the username field has focus, Tab moves on, Enter submits
            self.page.keyboard.type(username)
            self.page.keyboard.press("Tab")
            self.page.keyboard.type(password(username))
            self.page.keyboard.press("Enter")
        else:
            self.page.get_by_label("Username").fill(username)
            self.page.get_by_label("Password").fill(password(username))
            self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(f"{base_url}/")  # the dashboard, after the login redirect

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def expect_text(page: Any, text: str) -> None:
    sync_api.expect(page.locator("main")).to_contain_text(text)


def wait_for_system_evaluation(page: Any, timeout: float = 120) -> None:
    """Reload the change request page until the system's evaluations of both versions have succeeded (until then
    it says "The system is evaluating..." and approval waits), as a reviewer would."""
    deadline = time.monotonic() + timeout
    while "The system is evaluating" in page.locator("#recommendation").inner_text():
        assert time.monotonic() < deadline, f"the system evaluation did not finish in {timeout}s"
        page.wait_for_timeout(500)
        page.reload()
    statuses = page.locator("#evaluations tbody td:first-of-type")
    sync_api.expect(statuses).to_have_count(2)
    for status in statuses.all():
        sync_api.expect(status).to_contain_text("Succeeded", ignore_case=True)


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
    page.get_by_label("Re-enter your password").fill("wrong password")
    page.get_by_label(re.compile("Meaning of my signature")).first.check()
    page.locator("#approve-button").click()
    expect_text(page, "re-authentication failed")  # refused and recorded; nothing signed
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
    expect_text(page, "release.created")
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
