"""The reviewer portal with Django's test client: who sees which page, which buttons, what a forced POST gets,
that forms validate and report the actions' own messages, and how many queries each main page costs.

Data is built through the real actions (runs through the runner's own transitions), never by saving models.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Group

from governance.actions import (
    create_review_policy,
    import_dataset,
    release_version,
    update_program,
)
from governance.actions.runs import Proposal, claim_run, complete_run, record_trial, start_run
from governance.diffing import DELETE, EQUAL, INSERT, demo_changes, version_diff, word_diff
from governance.models import (
    AuditEvent,
    ChangeRequest,
    OptimizationRun,
    Review,
    RunStatus,
)
from governance.templatetags.portal import delta, duration, pct, trial_chart
from optimizer.bundle import generate_private_key, private_key_pem, verify_bundle
from optimizer.lm import Usage
from optimizer.search import TrialRecord
from tests.governance.conftest import evaluate, payload_with
from tests.optimizer.simulated import load_rows

pytestmark = pytest.mark.django_db

# The main pages must not grow with the number of rows (no N+1): 16 queries, plus the notification bell's unread
# count on every page; the change request page also reads its discussion (threads, assignments, the program's
# people offered to the assign form).
PAGES_MAX_QUERIES = 16 + 1
BASE_EXTRA = {"change_request": 3}


# --- data -------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def signing_key(settings, tmp_path):
    path = tmp_path / "signing_key.pem"
    path.write_bytes(private_key_pem(generate_private_key()))
    path.chmod(0o600)
    settings.GOVERNANCE_SIGNING_KEY_PATH = path
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""


@pytest.fixture
def datasets(program, author):
    for split, size in (("train", 40), ("val", 20), ("test", 20)):
        import_dataset(program, actor=author, split=split, name=f"{split} slice", rows=load_rows(split)[:size])
    return program


def _trial(number: int, score: float, *, full: bool, best: float | None) -> TrialRecord:
    return TrialRecord(number=number, params={"classify.instruction": number % 2, "classify.demos": 1},
                       state="complete" if full else "pruned", score=score, examples=20 if full else 5,
                       full_score=score if full else None, is_full=full, calls=5, cached_calls=0, tokens=400,
                       cost_usd=0.0, seconds=0.4, best_score=best)


@pytest.fixture
def production(make_approved, make_version, releaser):
    """v1, approved by two reviewers and released to production."""
    version = make_approved(version=make_version(instructions="Classify the support ticket into one category."))
    release_version(version, actor=releaser, reason="baseline")
    return version


@pytest.fixture
def finished_run(datasets, production, author):
    """A run started by the author and completed by the runner's transitions: trials, candidates, a version
    and its open change request, as a real run leaves them."""
    program = datasets
    run = start_run(program, actor=author, num_trials=3, enqueue=False)
    claim_run(run.pk, worker="test-worker", stale_after=60)
    usage = Usage(calls=5, cached_calls=0, prompt_tokens=300, completion_tokens=100, cost_usd=0.0, seconds_in_lm=0.1)
    best = None
    for number, (score, full) in enumerate([(0.55, True), (0.2, False), (0.9, True)]):
        best = score if full and (best is None or score > best) else best
        record_trial(run.pk, _trial(number, score, full=full, best=best), worker="test-worker", usage=usage,
                     owner=True)
    demos = [{"ticket": row["ticket"], "category": row["category"]} for row in load_rows("train")[:3]]
    payload = payload_with(program, "Classify the customer's support ticket as exactly one of the categories.")
    payload["program"]["predictors"][0]["demos"] = demos
    proposal = Proposal(
        payload=payload, scores={"test": 1.0},
        evaluation={"run": {"best_params": {"classify.instruction": 1, "classify.demos": 1, "classify.demo_count": 3}}},
        candidates={"instructions": {"classify": [{"text": "Classify the support ticket.", "source": "original"},
                                                  {"text": "Pick exactly one of the categories.", "source": "lm"}]},
                    "demo_sets": {"classify": [{"demos": [], "source": "zero-shot"},
                                               {"demos": demos, "source": "labeled"}]}},
        stop_reason="completed 3 trials", production_id=production.pk, title="Optimized support: run",
        description="Proposed by a test run.")
    cr = complete_run(run, worker="test-worker", proposal=proposal, usage=usage)
    run.refresh_from_db()
    return run, cr


@pytest.fixture
def cr(finished_run):
    return evaluate(finished_run[1])


def login(client, user, pw) -> Any:
    assert client.login(username=user.get_username(), password=pw(user))
    return client


def post(client, url: str, data: dict[str, Any]):
    return client.post(url, data)


# --- access -----------------------------------------------------------------------------------------------------


def test_anonymous_users_are_sent_to_the_login_page(client, cr):
    for url in ["/", "/programs/", f"/programs/{cr.program.slug}/", f"/change-requests/{cr.pk}/", "/audit/",
                f"/runs/{cr.version.run_id}/"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next="), url
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'<label for="id_username">' in page.content and b'<label for="id_password">' in page.content


def test_login_and_logout(client, author, pw):
    response = client.post("/login/", {"username": "author", "password": pw(author)})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302
    bad = client.post("/login/", {"username": "author", "password": "nope"})
    assert bad.status_code == 200 and b"Please enter a correct username and password" in bad.content


def test_every_main_page_renders_for_each_role_member(client, users, pw, finished_run):
    run, cr = finished_run
    slug = cr.program.slug
    for username in ("author", "reviewer1", "releaser", "auditor", "admin"):
        login(client, users[username], pw)
        for url in ["/", "/programs/", f"/programs/{slug}/", f"/programs/{slug}/versions/{cr.version.number}/",
                    f"/runs/{run.pk}/", f"/runs/{run.pk}/progress/", f"/change-requests/{cr.pk}/",
                    f"/programs/{slug}/releases/", f"/programs/{slug}/audit/"]:
            assert client.get(url).status_code == 200, (username, url)
        client.logout()


def test_a_non_member_gets_404_for_every_program_page_and_403_for_the_global_trail(client, outsider, pw,
                                                                                    finished_run):
    run, cr = finished_run
    login(client, outsider, pw)
    slug = cr.program.slug
    assert b"support" not in client.get("/programs/").content.split(b"<main")[1]
    for url in [f"/programs/{slug}/", f"/programs/{slug}/versions/1/", f"/runs/{run.pk}/",
                f"/runs/{run.pk}/progress/", f"/change-requests/{cr.pk}/", f"/programs/{slug}/releases/",
                f"/programs/{slug}/audit/", f"/programs/{slug}/audit.csv"]:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/change-requests/{cr.pk}/approve/", {}).status_code == 404
    refused = client.get("/audit/")
    assert refused.status_code == 403
    assert b"needs the auditor role to read the global audit trail" in refused.content


def test_unknown_objects_are_404(client, author, pw, program):
    login(client, author, pw)
    for url in ["/programs/nope/", "/change-requests/999/", "/runs/999/", f"/programs/{program.slug}/versions/9/"]:
        assert client.get(url).status_code == 404, url


# --- dashboard --------------------------------------------------------------------------------------------------


def test_dashboard_lists_what_waits_for_each_user(client, users, pw, cr):
    login(client, users["reviewer1"], pw)
    page = client.get("/").content.decode()
    assert f"CR-{cr.pk}" in page and "0 of 2" in page

    client.logout()
    login(client, users["author"], pw)
    page = client.get("/").content.decode()
    assert "Nothing to review" in page, "the author can never review the change proposed by their own run"
    assert f"Run {cr.version.run_id}" in page and "My proposals" in page


# --- runs -------------------------------------------------------------------------------------------------------


def test_run_page_shows_progress_chart_candidates_and_the_change_request(client, author, pw, finished_run):
    run, cr = finished_run
    login(client, author, pw)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "3 of 3 trials" in page and 'id="run-progress"' in page and 'value="100"' in page
    assert page.count('class="pt-full"') >= 2 and 'class="best-line"' in page
    assert "Pick exactly one of the categories." in page and "demo set 1" in page
    assert page.count(">Chosen") == 2 and "Chosen: first 3" in page  # instruction 1, demo set 1 (3 demos)
    assert f"CR-{cr.pk}" in page
    assert "hx-trigger" not in page, "a finished run is not polled"
    assert "cancel-run" not in page


def test_progress_partial_polls_while_running_and_reloads_the_page_when_done(client, author, pw, datasets):
    run = start_run(datasets, actor=author, num_trials=4, enqueue=False)
    login(client, author, pw)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and "0 of 4 trials" in page and 'id="cancel-run"' in page
    assert "Now:</strong> waiting for a worker" in page
    partial = client.get(f"/runs/{run.pk}/progress/?candidates=0", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and "HX-Refresh" not in partial
    assert b"<html" not in partial.content and b'hx-trigger="every 2s"' in partial.content
    response = client.post(f"/runs/{run.pk}/cancel/")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    partial = client.get(f"/runs/{run.pk}/progress/?candidates=0", HTTP_HX_REQUEST="true")
    assert partial["HX-Refresh"] == "true" and b"hx-trigger" not in partial.content


def test_start_run_form(client, users, pw, datasets):
    slug = datasets.slug
    login(client, users["author"], pw)
    bad = client.post(f"/programs/{slug}/runs/", {"preset": "light", "seed": "-1"})
    assert bad.status_code == 400 and b"Ensure this value is greater than or equal to 0." in bad.content
    good = client.post(f"/programs/{slug}/runs/", {"preset": "light", "seed": "7", "num_trials": "2",
                                                   "max_calls": "100"})
    run = OptimizationRun.objects.get()
    assert good.status_code == 302 and good["Location"] == f"/runs/{run.pk}/"
    assert run.config["seed"] == 7 and run.config["num_trials"] == 2 and run.config["budget"]["max_calls"] == 100
    assert run.started_by == users["author"] and run.status == RunStatus.QUEUED

    client.logout()
    login(client, users["reviewer1"], pw)
    assert b"Start an optimization run" not in client.get(f"/programs/{slug}/").content
    refused = client.post(f"/programs/{slug}/runs/", {"preset": "light", "seed": "1"})
    assert refused.status_code == 403 and b"needs the author role to start optimization runs" in refused.content


# --- change request review --------------------------------------------------------------------------------------


def test_review_page_shows_diff_scores_failures_provenance(client, reviewer1, pw, cr, production):
    login(client, reviewer1, pw)
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert '<ins class="diff-ins">' in page and "customer&#x27;s" in page  # the inserted words
    assert "Demos added (3)" in page and "Demos removed (0)" in page
    assert "System evaluation" in page and "+100.0 pts" in page and "100.0%" in page and "0.0%" in page
    assert "Recommended" in page and "exact McNemar (one-sided)" in page
    assert "newly right" in page and load_rows("test")[0]["ticket"][:40] in page  # aligned examples
    assert "No findings" in page or 'id="checks"' in page
    assert cr.version.content_hash in page
    assert f"run {cr.version.run_id}" in page
    for form_id in ('id="id_approve-password"', 'id="id_approve-confirm_meaning"', 'id="id_reject-reason"',
                    'id="id_changes-reason"'):
        assert form_id in page
    assert 'for="id_approve-password"' in page, "every input has a label"


def test_author_sees_no_review_buttons_and_a_forced_post_is_refused(client, author, pw, cr):
    login(client, author, pw)
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert "approve-button" not in page and "id_reject-reason" not in page
    assert "needs the reviewer role to review change requests" in page
    assert "Withdraw this change request" in page  # the proposer may withdraw
    for action in ("approve", "reject", "request_changes"):
        response = client.post(f"/change-requests/{cr.pk}/{action}/", {
            "approve-content_hash": cr.version.content_hash, "reject-content_hash": cr.version.content_hash,
            "changes-content_hash": cr.version.content_hash,
            "approve-password": pw(author), "approve-confirm_meaning": "on", "reject-reason": "x",
            "reject-confirm_meaning": "on", "changes-reason": "x", "changes-confirm_meaning": "on"})
        assert response.status_code == 403, action
        assert b"needs the reviewer role to review change requests" in response.content
    assert not Review.objects.filter(change_request=cr).exists()


def test_a_reviewer_who_already_approved_gets_409_on_a_second_approval(client, reviewer1, pw, cr):
    login(client, reviewer1, pw)
    data = {"approve-content_hash": cr.version.content_hash, "approve-password": pw(reviewer1),
            "approve-confirm_meaning": "on"}
    assert client.post(f"/change-requests/{cr.pk}/approve/", data).status_code == 302
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert "approve-button" not in page and "has already approved this content" in page
    again = client.post(f"/change-requests/{cr.pk}/approve/", data)
    assert again.status_code == 409 and b"has already approved this content" in again.content


def test_approve_form_requires_the_meaning_and_the_right_password(client, reviewer1, reviewer2, pw, cr):
    login(client, reviewer1, pw)
    url = f"/change-requests/{cr.pk}/approve/"
    missing = client.post(url, {"approve-content_hash": cr.version.content_hash,
                                "approve-password": pw(reviewer1)})
    assert missing.status_code == 400 and b"This field is required." in missing.content
    seen = cr.version.content_hash
    wrong = client.post(url, {"approve-content_hash": seen, "approve-password": "not it",
                              "approve-confirm_meaning": "on"})
    assert wrong.status_code == 403 and b"re-authentication failed" in wrong.content
    assert AuditEvent.objects.filter(action="signature.failed", actor=reviewer1).count() == 1
    ok = client.post(url, {"approve-content_hash": seen, "approve-password": pw(reviewer1),
                           "approve-confirm_meaning": "on", "approve-reason": "Looks right."})
    assert ok.status_code == 302
    assert "more approvals are needed" in client.get(ok["Location"]).content.decode()

    client.logout()
    login(client, reviewer2, pw)
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert "Reviewer1 Example" in page and "I approve this prompt version for release" in page
    assert client.post(url, {"approve-content_hash": seen, "approve-password": pw(reviewer2),
                             "approve-confirm_meaning": "on"}).status_code == 302
    cr.refresh_from_db()
    cr.version.refresh_from_db()
    assert cr.status == "approved" and cr.version.status == "approved"
    page = client.get(f"/change-requests/{cr.pk}/").content.decode()
    assert "2 of 2 approvals" in page and "approve-button" not in page


def test_reject_needs_a_reason_and_request_changes_sends_the_version_back(client, reviewer1, pw, cr, make_cr):
    login(client, reviewer1, pw)
    no_reason = client.post(f"/change-requests/{cr.pk}/reject/", {"reject-confirm_meaning": "on"})
    assert no_reason.status_code == 400 and b"This field is required." in no_reason.content
    rejected = client.post(f"/change-requests/{cr.pk}/reject/", {
        "reject-content_hash": cr.version.content_hash, "reject-reason": "Worse on refunds.",
        "reject-confirm_meaning": "on"})
    assert rejected.status_code == 302
    cr.refresh_from_db()
    assert cr.status == "rejected" and cr.reviews.get().reason == "Worse on refunds."

    other = make_cr()
    sent_back = client.post(f"/change-requests/{other.pk}/request_changes/", {
        "changes-content_hash": other.version.content_hash, "changes-reason": "Mention refunds.",
        "changes-confirm_meaning": "on"})
    assert sent_back.status_code == 302
    other.refresh_from_db()
    assert other.status == "changes_requested" and other.version.status == "draft"


def test_the_proposer_resubmits_after_requested_changes(client, author, reviewer1, pw, make_cr):
    from governance.actions import edit_version, request_changes

    other = make_cr()
    request_changes(other, actor=reviewer1, reason="Mention refunds.", content_hash=other.version.content_hash)
    edit_version(other.version, actor=author, payload=payload_with(other.program, "Now mentions refunds."))
    login(client, author, pw)
    assert b"Resubmit for review" in client.get(f"/change-requests/{other.pk}/").content
    assert client.post(f"/change-requests/{other.pk}/resubmit/", {"resubmit-reason": "done"}).status_code == 302
    other.refresh_from_db()
    assert other.status == "open"
    assert client.post(f"/change-requests/{other.pk}/frobnicate/", {}).status_code == 404


# --- versions and exports ---------------------------------------------------------------------------------------


def test_export_downloads_a_verifiable_bundle_of_an_approved_version_only(client, auditor, author, pw, production,
                                                                           make_version):
    login(client, auditor, pw)
    url = f"/programs/{production.program.slug}/versions/{production.number}/"
    assert b"Download signed bundle" in client.get(url).content
    response = client.post(url + "export/")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    verified = verify_bundle(json.loads(response.content))
    assert verified.content_hash == production.content_hash and len(verified.approvals) == 2
    assert AuditEvent.objects.filter(action="version.exported", actor=auditor).count() == 1
    assert client.get(url + "export/").status_code == 405

    draft = make_version()
    draft_url = f"/programs/{draft.program.slug}/versions/{draft.number}/"
    page = client.get(draft_url).content
    assert b"Download signed bundle" not in page and b"Only approved versions can be exported" in page
    refused = client.post(draft_url + "export/")
    assert refused.status_code == 409 and b"only approved versions can be exported" in refused.content


def test_export_without_a_signing_key_is_a_clear_503(client, auditor, pw, production, settings, tmp_path):
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "missing.pem"
    login(client, auditor, pw)
    response = client.post(f"/programs/{production.program.slug}/versions/{production.number}/export/")
    assert response.status_code == 503 and b"generate_signing_key" in response.content


def test_the_author_submits_a_draft_for_review_from_its_page(client, author, pw, make_version):
    draft = make_version()
    login(client, author, pw)
    url = f"/programs/{draft.program.slug}/versions/{draft.number}/submit/"
    bad = client.post(url, {"impact": "enormous"})
    assert bad.status_code == 400 and b"Select a valid choice." in bad.content
    ok = client.post(url, {"title": "Please review", "impact": "low", "ticket_ref": "CHG-1"})
    created = ChangeRequest.objects.get(version=draft)
    assert ok.status_code == 302 and ok["Location"] == f"/change-requests/{created.pk}/"
    assert created.title == "Please review" and created.ticket_ref == "CHG-1"


# --- releases ---------------------------------------------------------------------------------------------------


# Release, rollback, fallback and kill switch through their confirmation step: tests/governance/test_portal_releases.py


def test_only_releasers_see_and_use_the_release_forms(client, reviewer1, pw, production):
    slug = production.program.slug
    login(client, reviewer1, pw)
    page = client.get(f"/programs/{slug}/releases/").content.decode()
    assert "release-button" not in page and "Only releasers move labels" in page
    refused = client.post(f"/programs/{slug}/releases/release/", {"release-version": production.pk,
                                                                  "release-label": "staging", "release-reason": "x"})
    assert refused.status_code == 403 and b"needs the releaser role" in refused.content
    refused = client.post(f"/programs/{slug}/releases/kill-switch/", {"label": "production", "on": "1",
                                                                      "reason": "x"})
    assert refused.status_code == 403


# --- audit ------------------------------------------------------------------------------------------------------


def timeline(response) -> str:
    return response.content.decode().split('<ol class="timeline">')[1].split("</ol>")[0]


def test_audit_trail_filters_verifies_and_downloads(client, auditor, author, pw, cr):
    from django.core.management import call_command

    login(client, auditor, pw)
    assert 'id="chain-status"' in client.get("/audit/").content.decode()  # "no checkpoint yet"
    call_command("audit_checkpoint", stdout=io.StringIO())
    page = client.get("/audit/").content.decode()
    assert "verified" in page and "signature valid" in page and "change_request.opened" in page
    filtered = timeline(client.get("/audit/", {"action": "review.approved"}))
    assert filtered.count('class="when"') == 2  # the production version's two approvals
    by_actor = timeline(client.get("/audit/", {"actor": "releaser"}))
    assert "release.created" in by_actor and "review.approved" not in by_actor
    bad_period = client.get("/audit/", {"since": "2030-01-02", "until": "2030-01-01"})
    assert bad_period.status_code == 200 and b"The period starts after it ends." in bad_period.content

    response = client.get("/audit.csv", {"action": "review."})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["action"] for r in rows] == ["review.approved", "review.approved"]
    assert rows[0]["hash"] and rows[0]["program"] == cr.program.slug
    assert client.get("/audit.csv", {"since": "2030-01-02", "until": "2030-01-01"}).status_code == 400

    client.logout()
    login(client, author, pw)
    assert client.get(f"/programs/{cr.program.slug}/audit/").status_code == 200
    program_csv = client.get(f"/programs/{cr.program.slug}/audit.csv")
    assert program_csv.status_code == 200 and b"run.started" in program_csv.content


def test_audit_page_reports_a_broken_checkpoint(client, auditor, pw, cr, monkeypatch):
    from governance.audit import CheckpointStatus

    broken = CheckpointStatus(None, ["the latest checkpoint: event #3 no longer has the hash it recorded"], 40, 0)
    monkeypatch.setattr("governance.portal_audit.checkpoint_status", lambda: broken)
    login(client, auditor, pw)
    page = client.get("/audit/").content.decode()
    assert "event #3 no longer has the hash it recorded" in page and "chain-status" not in page


# --- query counts -----------------------------------------------------------------------------------------------


def _more_rows(make_cr, make_version, make_approved, n: int = 4) -> None:
    """n more open change requests and drafts, one more approved version (and their reviews and audit rows)."""
    for _ in range(n):
        make_cr()
        make_version()
    make_approved()


def test_main_pages_have_a_constant_query_count(client, users, pw, finished_run, make_cr, make_version, make_approved,
                                                django_assert_max_num_queries):
    """No page makes a query per row: the rights checks of a list (the dashboard's buttons per waiting change
    request, the releases page's segregation of duties per approved version) read prefetched rows."""
    run, cr = finished_run
    slug = cr.program.slug
    pages = {  # page -> (user, url)
        "dashboard": ("reviewer1", "/"), "programs": ("author", "/programs/"),
        "program": ("author", f"/programs/{slug}/"),
        "version": ("author", f"/programs/{slug}/versions/{cr.version.number}/"),
        "run": ("author", f"/runs/{run.pk}/"), "progress": ("author", f"/runs/{run.pk}/progress/"),
        "change_request": ("reviewer1", f"/change-requests/{cr.pk}/"),
        "releases": ("releaser", f"/programs/{slug}/releases/"), "audit": ("auditor", "/audit/"),
        "program_audit": ("auditor", f"/programs/{slug}/audit/"),
    }

    def count_queries() -> dict[str, int]:
        counts = {}
        for page, (username, url) in pages.items():
            login(client, users[username], pw)
            with django_assert_max_num_queries(PAGES_MAX_QUERIES + BASE_EXTRA.get(page, 0)) as queries:
                assert client.get(url).status_code == 200, page
            counts[page] = len(queries.captured_queries)
            client.logout()
        return counts

    # Pages word the audit events they show with one query per kind of object among them (not per event), so both
    # counts follow the same kind of activity: one round of rows, then four more of each.
    _more_rows(make_cr, make_version, make_approved, n=1)
    before = count_queries()
    _more_rows(make_cr, make_version, make_approved)
    after = count_queries()
    grown = {page: after[page] - before[page] for page in pages if after[page] > before[page]}
    assert not grown, f"more rows, more queries: {grown} ({before} -> {after})"


def test_dashboard_under_a_reviewer_group_policy_asks_for_the_group_once(client, users, pw, program, make_cr,
                                                                         django_assert_max_num_queries):
    """The policy's reviewer group replaces the reviewer role: the reviewer's groups are read once per page, not
    once per waiting change request."""
    group = Group.objects.create(name="compliance")
    policy = create_review_policy(actor=users["admin"], name="compliance-2", reviewer_group=group)
    update_program(program, actor=users["admin"], review_policy=policy)
    users["reviewer3"].groups.add(group)
    login(client, users["reviewer3"], pw)

    def dashboard() -> tuple[int, str]:
        with django_assert_max_num_queries(PAGES_MAX_QUERIES) as queries:
            response = client.get("/")
        assert response.status_code == 200
        return len(queries.captured_queries), response.content.decode()

    make_cr(evaluated=False)
    before, _ = dashboard()
    crs = [make_cr(evaluated=False) for _ in range(3)]
    after, page = dashboard()
    assert after <= before, f"{before} queries with one waiting change request, {after} with four"
    assert all(f"/change-requests/{cr.pk}/" in page for cr in crs)  # listed to review: the group check passed


# --- diffing and template helpers -------------------------------------------------------------------------------


def test_word_diff_marks_changed_words_on_each_side():
    diff = word_diff("Classify the ticket into one category.", "Classify the customer ticket into exactly one team.")
    old = "".join(s.text for s in diff.old)
    new = "".join(s.text for s in diff.new)
    assert old == "Classify the ticket into one category." and new.endswith("exactly one team.")
    assert [s.text.strip() for s in diff.new if s.op == INSERT] == ["customer", "exactly", "team"]
    assert [s.text for s in diff.old if s.op == DELETE] == ["category"]
    assert diff.words_added == 3 and diff.words_removed == 1 and diff.changed
    same = word_diff("a b", "a b")
    assert not same.changed and same.old[0].op == EQUAL


def test_demo_changes_compare_by_content_and_count_duplicates():
    a, b, c = {"t": "a", "c": "x"}, {"t": "b", "c": "y"}, {"t": "c", "c": "z"}
    added, removed, kept = demo_changes([a, b, b], [b, c, a])
    assert added == [c] and removed == [b] and kept == 2


def test_version_diff_against_no_production_treats_everything_as_new(program):
    candidate = payload_with(program, "New words.")
    diff = version_diff(None, candidate)
    assert diff.predictors[0].instructions.new[0].op == INSERT and diff.lm_changes == []
    other = payload_with(program, "New words.")
    other["lm"]["temperature"] = 0.7
    assert version_diff(candidate, other).lm_changes == [("temperature", 0.0, 0.7)]


def test_template_helpers():
    assert pct(0.8123) == "81.2%" and pct(None) == "\u2014"
    assert "+3.5 pts" in delta(0.035) and "delta-down" in delta(-0.01) and "\u00b10.0" in delta(0.0)
    assert duration(75) == "1 min 15 s" and duration(3700) == "1 h 01 min" and duration(None) == "\u2014"
    svg = trial_chart([], 10)
    assert svg.startswith("<svg") and "No trial has been scored yet." in svg


@pytest.mark.parametrize("window", [500, 2])
def test_dashboard_recent_activity_shows_only_the_programs_a_member_sees(users, program, author, window, monkeypatch):
    """Newest first, only visible programs, whether the member's events are among the newest ids (the fast path)
    or older than the window read at once (the indexed fallback)."""
    from governance import views
    from governance.actions import create_program, create_version
    from governance.permissions import visible_programs
    from tests.governance.conftest import INLINE_SPEC

    monkeypatch.setattr(views, "RECENT_WINDOW", window)
    hidden = create_program(actor=users["admin"], slug="hidden", name="Hidden", spec=INLINE_SPEC)
    for n in range(3):  # newer than everything of the member's program
        create_version(hidden, actor=users["admin"], payload=payload_with(hidden, f"Hidden {n}."))
    recent = views._recent_events(author, visible_programs(author))
    assert recent and all(event.program_id == program.pk for event in recent)
    assert [e.id for e in recent] == sorted((e.id for e in recent), reverse=True)
    admin_recent = views._recent_events(users["admin"], visible_programs(users["admin"]))
    assert admin_recent[0].program_id == hidden.pk
