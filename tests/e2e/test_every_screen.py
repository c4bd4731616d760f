"""Every portal page, in one browser: no sideways scrolling at 390 px, light and dark (prefers-color-scheme), and
an axe-core scan with no serious or critical violation; a screenshot of each at desktop and 390 px in both schemes.

axe-core comes from the npm registry (tests/e2e/axe/package.json; scripts/test.sh installs it when missing) and is
injected into each page. The data is built through the real actions: v1 released (the `world` fixture), an
optimization run completed through the runner's own transitions with its change request evaluated by the system,
an approved v3, a draft, a comment; the pages are then read as each role reads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.urls import NoReverseMatch, reverse

from governance.actions import (
    approve_change_request,
    create_user_with_roles,
    create_version,
    initial_payload,
    open_change_request,
)
from governance.actions.runs import Proposal, claim_run, complete_run, record_trial, start_run
from optimizer.lm import Usage
from optimizer.search import TrialRecord
from tests.governance.export_helpers import evaluate
from tests.optimizer.simulated import load_rows

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra installs playwright")

from tests.e2e.portal import (  # noqa: E402  (after the skip: the module needs playwright)
    SCREENSHOTS,
    Portal,
    browser,
    committed,
    lm_server,
    password,
    portal_settings,
    world,
)

FIXTURES = (browser, committed, lm_server, portal_settings, world)  # imported so pytest finds them
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
if not AXE.exists():
    pytest.skip("axe-core is not installed (scripts/test.sh installs it: npm install --prefix tests/e2e/axe)",
                allow_module_level=True)

DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}
# Each page at desktop in light and at 390 px in dark (both scanned by axe; the colour scheme changes colours, not
# widths). Refreshing the docs' screenshots (GOVERNANCE_SCREENSHOTS_DIR) takes all four combinations.
ALL_COMBINATIONS = bool(os.environ.get("GOVERNANCE_SCREENSHOTS_DIR"))
COMBINATIONS = [(size, viewport, scheme) for scheme in ("light", "dark")
                for size, viewport in (("desktop", DESKTOP), ("phone", PHONE))
                if ALL_COMBINATIONS or (size, scheme) in (("desktop", "light"), ("phone", "dark"))]
SCANNED = {("desktop", "light"), ("phone", "dark")}
MAX_SHOT_HEIGHT = 5000
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.filter(v => v.impact === "serious" || v.impact === "critical").map(v => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
}"""


@dataclass(frozen=True)
class Screen:
    name: str  # the screenshot's name
    user: str | None  # None: signed out
    url: str
    status: int = 200


# --- data -------------------------------------------------------------------------------------------------------


def _trial(number: int, score: float, *, full: bool, best: float | None) -> TrialRecord:
    return TrialRecord(number=number, params={"classify.instruction": number % 2, "classify.demos": 1},
                       state="complete" if full else "pruned", score=score, examples=20 if full else 5,
                       full_score=score if full else None, is_full=full, calls=5, cached_calls=0, tokens=400,
                       cost_usd=0.0, seconds=0.4, best_score=best)


def _finished_run(program: Any, author: Any, production: Any) -> tuple[Any, Any]:
    """A run completed through the runner's own transitions; its change request evaluated by the system."""
    run = start_run(program, actor=author, num_trials=3, enqueue=False)
    claim_run(run.pk, worker="screens", stale_after=60)
    usage = Usage(calls=5, cached_calls=0, prompt_tokens=300, completion_tokens=100, cost_usd=0.0, seconds_in_lm=0.1)
    best = None
    for number, (score, full) in enumerate([(0.55, True), (0.2, False), (0.9, True)]):
        best = score if full and (best is None or score > best) else best
        record_trial(run.pk, _trial(number, score, full=full, best=best), worker="screens", usage=usage, owner=True)
    demos = [{"ticket": row["ticket"], "category": row["category"]} for row in load_rows("train")[:3]]
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["signature"]["instructions"] = (
        "Classify the customer's support ticket as exactly one of the categories.")
    payload["program"]["predictors"][0]["demos"] = demos
    proposal = Proposal(
        payload=payload, scores={"test": 0.9},
        evaluation={"run": {"best_params": {"classify.instruction": 1, "classify.demos": 1, "classify.demo_count": 3}}},
        candidates={"instructions": {"classify": [{"text": "Classify the support ticket.", "source": "original"},
                                                  {"text": "Pick exactly one of the categories.", "source": "lm"}]},
                    "demo_sets": {"classify": [{"demos": [], "source": "zero-shot"},
                                               {"demos": demos, "source": "labeled"}]}},
        stop_reason="completed 3 trials", production_id=production.pk, title="Optimized support triage",
        description="Proposed by an optimization run.")
    cr = complete_run(run, worker="screens", proposal=proposal, usage=usage)
    return run, evaluate(cr)


def _approved(program: Any, users: dict[str, Any]) -> Any:
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["signature"]["instructions"] = (
        "Read the ticket and answer with the one team that handles it.")
    version = create_version(program, actor=users["author"], payload=payload, note="Hand-tuned wording.")
    cr = evaluate(open_change_request(version, actor=users["author"], title="Plainer wording", impact="low"))
    for name in ("reviewer1", "reviewer2"):
        approve_change_request(cr, actor=users[name], password=password(name), content_hash=version.content_hash)
        cr.refresh_from_db()
    version.refresh_from_db()
    return version


def _url(name: str, *args: Any) -> str | None:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:  # a page another change has not brought yet
        return None


def _screens(world: dict[str, Any]) -> list[Screen]:
    program, users = world["program"], world["users"]
    create_user_with_roles(actor=None, username="admin", password=password("admin"), roles=["admin"],
                           first_name="Ada", last_name="Admin")
    run, cr = _finished_run(program, users["author"], world["v1"])
    approved = _approved(program, users)
    draft = create_version(program, actor=users["author"], payload=initial_payload(program), note="A draft.")
    dataset = program.datasets.get(split="test")
    slug = program.slug
    pages = [
        ("login", None, "login"), ("dashboard", "reviewer1", "dashboard"), ("programs", "author", "program_list"),
        ("program", "author", "program_detail", slug), ("program-new", "author", "program_new"),
        ("dataset", "author", "dataset_detail", slug, dataset.pk), ("dataset-upload", "author", "dataset_upload", slug),
        ("version", "author", "version_detail", slug, cr.version.number),
        ("version-edit", "author", "version_edit", slug, draft.number),
        ("playground", "author", "version_playground", slug, approved.number),
        ("compare", "author", "compare", slug), ("run", "author", "run_detail", run.pk),
        ("change-request", "reviewer1", "change_request_detail", cr.pk), ("releases", "releaser", "releases", slug),
        ("audit", "auditor", "audit"), ("audit-program", "auditor", "audit_program", slug),
        ("signing-key", "auditor", "signing_key"), ("notifications", "reviewer1", "notifications"),
        ("notification-settings", "reviewer1", "notification_settings"),
        ("password", "author", "password_change"), ("keys", "author", "my_keys"), ("sessions", "author", "my_sessions"),
        ("accounts", "admin", "account_list"), ("account", "admin", "account_detail", "author"),
        ("account-new", "admin", "account_create"),
    ]
    screens = [Screen(name, user, url) for name, user, view, *args in pages if (url := _url(view, *args))]
    screens += [Screen("not-found", "author", "/programs/no-such-program/", 404),
                Screen("not-allowed", "reviewer1", "/audit/", 403),
                Screen("form-address", "releaser", f"/programs/{slug}/releases/release/", 405)]
    world["approved"] = approved
    return screens


# --- checks -----------------------------------------------------------------------------------------------------


def _check(page: Any, label: str, width: int, *, scan: bool, problems: list[str]) -> None:
    page.wait_for_load_state("load")
    overflow = page.evaluate("document.documentElement.scrollWidth")
    if overflow > width:
        wide = page.evaluate("""(width) => [...document.querySelectorAll('main *')]
            .filter(e => e.getBoundingClientRect().right > width + 1).slice(0, 3)
            .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.'))""", width)
        problems.append(f"{label}: scrollWidth {overflow} > {width} ({', '.join(wide)})")
    if scan:
        page.add_script_tag(path=str(AXE))
        for violation in page.evaluate(AXE_RUN):
            problems.append(f"{label}: axe {violation['impact']} {violation['id']} ({violation['help']}) at "
                            f"{json.dumps(violation['nodes'])}")


def shoot(page: Any, name: str) -> None:
    """The whole page, cut at MAX_SHOT_HEIGHT (a long audit trail on a phone is 20 000 px)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_SHOT_HEIGHT)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True,
                    clip={"x": 0, "y": 0, "width": size["width"], "height": height})


def _visit(page: Any, screen: Screen, problems: list[str]) -> None:
    """The page at desktop and phone width, light and dark: sizes everywhere, axe at desktop light and phone dark."""
    for size, viewport, scheme in COMBINATIONS:
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size(viewport)
        response = page.goto(screen.url)
        if response is None or response.status != screen.status:
            problems.append(f"{screen.name}: HTTP {response.status if response else '?'}, not {screen.status}")
        _check(page, f"{screen.name} {size} {scheme}", viewport["width"], scan=(size, scheme) in SCANNED,
               problems=problems)
        shoot(page, f"{screen.name}-{size}-{scheme}")


def _release_confirmation(portal: Portal, version: Any, slug: str, problems: list[str]) -> None:
    """The release's confirmation step (a page answering a POST), checked like the others."""
    page = portal.page
    for size, viewport, scheme in COMBINATIONS:
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size(viewport)
        page.goto(f"/programs/{slug}/releases/")
        new_label = page.get_by_label("New label name")
        sync_api.expect(new_label).to_be_hidden()  # shown only when a new label is asked for
        page.locator("select[name=release-label]").select_option(value="__new__")
        sync_api.expect(new_label).to_be_visible()
        page.locator("select[name=release-label]").select_option(value="production")
        page.get_by_label("Approved version").select_option(value=str(version.pk))
        page.get_by_label("Reason for the release").fill("Plainer wording, approved by two reviewers.")
        page.locator("#release-button").click()
        sync_api.expect(page.locator("#confirm-button")).to_be_visible()
        assert page.url.endswith(f"/programs/{slug}/releases/"), page.url  # not the POST-only address
        _check(page, f"release-confirm {size} {scheme}", viewport["width"], scan=(size, scheme) in SCANNED,
               problems=problems)
        shoot(page, f"release-confirm-{size}-{scheme}")


def test_every_page_fits_a_phone_in_both_schemes_without_serious_accessibility_violations(world, live_server,
                                                                                          browser):
    screens = _screens(world)
    problems: list[str] = []
    portals: dict[str | None, Portal] = {}
    anonymous = browser.new_context(base_url=live_server.url)
    try:
        for screen in screens:
            if screen.user is None:
                page = anonymous.new_page()
            else:
                if screen.user not in portals:
                    portals[screen.user] = Portal(browser, live_server.url, screen.user)
                page = portals[screen.user].page
            _visit(page, screen, problems)
        releaser = portals.get("releaser") or Portal(browser, live_server.url, "releaser")
        _release_confirmation(releaser, world["approved"], world["program"].slug, problems)
    finally:
        for portal in portals.values():
            portal.close()
        anonymous.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
    assert len(screens) >= 15, [s.name for s in screens]
