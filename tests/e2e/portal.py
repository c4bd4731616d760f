"""Shared browser-test support: Debian chromium under Playwright, a signed-in portal tab, the committed-database
and live-server settings, and the demo "world" (users, the support-ticket program on the fake LM, baseline v1
evaluated, approved and released through the real actions).

Test modules import the fixtures they use from here (`from tests.e2e.portal import browser, world, ...`), so
pytest finds them; a module imported without playwright or chromium is skipped, never failed, outside CI.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
from optimizer.bundle import generate_private_key, private_key_pem
from tests.governance.conftest import flush_past_integrity_triggers
from tests.governance.export_helpers import evaluate
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import DEMO_DIR, SimulatedClassifier, load_rows

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
# Tests write their screenshots to a temporary folder (a test run never touches the tracked docs/screenshots);
# `scripts/screenshots.sh` sets GOVERNANCE_SCREENSHOTS_DIR=docs/screenshots to refresh the docs' pictures.
SCREENSHOTS = Path(os.environ.get("GOVERNANCE_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "governance-screenshots")
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


