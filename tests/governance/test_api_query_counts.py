"""Every list endpoint of the API costs the same number of queries whatever the number of rows it lists (no N+1).

The rows are made through the real actions (the conftest fixtures, runs through the runner's own transitions):
one round of the rows a list shows, a count, three more rounds, the count again.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.actions import add_comment, assign_reviewer, create_api_key, create_user, grant_membership
from governance.actions import create_program, import_dataset, release_version
from governance.actions.exports import export_version
from governance.actions.notifications import notify
from governance.actions.runs import claim_run, record_trial, start_run
from governance.actions.webhooks import create_subscription, queue_deliveries
from governance.api.urls import router
from governance.models import NotificationKind, Role
from optimizer.lm import Usage
from optimizer.search import TrialRecord
from tests.governance.api_support import V1
from tests.governance.conftest import demo_spec
from tests.optimizer.simulated import load_rows

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

# Who lists each endpoint (default: an administrator, who sees every program; notifications are one's own).
READERS = {"notifications": "reviewer1"}
# List endpoints outside the router.
EXTRA_LISTS = {"memberships": "programs/support/memberships/"}
LISTS = {prefix: f"{prefix}/" for prefix, _, _ in router.registry} | EXTRA_LISTS
ROUNDS_BEFORE, ROUNDS_AFTER = 1, 3


@pytest.fixture
def webhooks_to_loopback(settings):
    """A subscription's URL is checked when made: let it name this machine (nothing is delivered here)."""
    settings.GOVERNANCE_WEBHOOK_ALLOW_PRIVATE = True
    settings.GOVERNANCE_WEBHOOK_ALLOW_HTTP = True


def _trial(number: int) -> TrialRecord:
    return TrialRecord(number=number, params={"classify.instruction": 0}, state="complete", score=0.5, examples=5,
                       full_score=0.5, is_full=True, calls=5, cached_calls=0, tokens=100, cost_usd=0.0, seconds=0.1,
                       best_score=0.5)


class Rows:
    """Makes rows of each kind the API lists, each round by other people or on other objects where it can."""

    def __init__(self, program: Any, users: dict[str, Any], make_version: Any, make_cr: Any, approve: Any) -> None:
        self.main, self.users, self.round = program, users, 0
        self.make_version, self.make_cr, self.approve = make_version, make_cr, approve
        self.subscription = create_subscription(program, actor=users["author"], url="http://127.0.0.1:9/hook",
                                                events=["release.created"])

    def add(self, kinds: tuple[str, ...]) -> None:
        self.round += 1
        for kind in kinds:
            getattr(self, kind)(self.round)

    def program(self, n: int) -> None:
        create_program(actor=self.users["author"], slug=f"program-{n}", name=f"Program {n}", spec=demo_spec(),
                       metric="choice", members=[self.users["reviewer1"], self.users[f"reviewer{1 + n % 3}"]])

    def dataset(self, n: int) -> None:
        import_dataset(self.main, actor=self.users["author"], split="train", name=f"train {n}",
                       rows=load_rows("train")[4 * n:4 * n + 10])

    def version(self, n: int) -> None:
        self.make_version(actor=self.users["author2" if n % 2 else "author"])

    def user(self, n: int) -> None:
        admin, secret = self.users["admin"], f"newcomer-{n}-secret-pass"
        newcomer = create_user(actor=admin, username=f"newcomer{n}", password=secret, roles=[Role.REVIEWER],
                               email=f"newcomer{n}@example.com")
        grant_membership(self.main, newcomer, actor=admin, roles=[Role.REVIEWER])
        create_api_key(newcomer, actor=newcomer, password=secret, name=f"key {n}", programs=[self.main])

    def run(self, n: int) -> None:
        if n == 1:
            import_dataset(self.main, actor=self.users["author"], split="train", name="train",
                           rows=load_rows("train")[:10])
        run = start_run(self.main, actor=self.users["author2" if n % 2 else "author"], num_trials=2,
                        enqueue=False)
        claim_run(run.pk, worker="test-worker", stale_after=60)
        usage = Usage(calls=5, cached_calls=0, prompt_tokens=50, completion_tokens=10, cost_usd=0.0,
                      seconds_in_lm=0.1)
        for number in range(2):
            record_trial(run.pk, _trial(number), worker="test-worker", usage=usage, owner=True)

    def change_request(self, n: int) -> Any:
        """An open change request, evaluated by the system (its two evaluations)."""
        return self.make_cr(actor=self.users["author2" if n % 2 else "author"])

    def release(self, n: int) -> None:
        """An approved version (two signatures), released to a new label and exported."""
        cr = self.change_request(n)
        self.approve(cr, self.users["reviewer1"])
        self.approve(cr, self.users[f"reviewer{2 + n % 2}"])
        cr.version.refresh_from_db()
        release_version(cr.version, actor=self.users["releaser"], label=f"canary-{n}", reason="query count")
        export_version(cr.version, actor=self.users["releaser"])
        queue_deliveries(self.main, "release.created", {"round": n})

    def discussion(self, n: int) -> None:
        cr = self.make_cr(evaluated=False)
        add_comment(cr, actor=self.users["reviewer1"], body=f"Round {n}: see @author2")
        assign_reviewer(cr, actor=self.users["author"], reviewer=self.users[f"reviewer{2 + n % 2}"])

    def notification(self, n: int) -> None:
        notify([self.users["reviewer1"]], kind=NotificationKind.COMMENTED, actor=self.users[f"reviewer{2 + n % 2}"],
               program=self.main, subject_type="Program", subject_id=self.main.pk, text=f"Round {n}",
               link="/")

    def webhook(self, n: int) -> None:
        create_subscription(self.main, actor=self.users["author"], url=f"http://127.0.0.1:9/hook{n}",
                            events=["release.created"])

    def delivery(self, n: int) -> None:
        queue_deliveries(self.main, "release.created", {"round": n})


# The rows each list shows (Rows' methods); the audit trail lists every action's event.
KINDS = {"programs": ("program",), "datasets": ("dataset",), "versions": ("version",), "runs": ("run",),
         "trials": ("run",), "evaluations": ("change_request",), "change-requests": ("change_request",),
         "reviews": ("release",), "releases": ("release",), "labels": ("release",), "exports": ("release",),
         "audit-events": ("version", "user", "release"), "webhooks": ("webhook",), "webhook-deliveries": ("delivery",),
         "users": ("user",), "comments": ("discussion",), "assignments": ("discussion",),
         "notifications": ("notification",), "memberships": ("user",)}


@pytest.fixture
def rows(program, users, make_version, make_cr, approve, signing, webhooks_to_loopback) -> Rows:
    return Rows(program, users, make_version, make_cr, approve)


def _count(api: Any, user: Any, url: str) -> tuple[int, int]:
    """(queries, rows listed) of one GET of the list."""
    with CaptureQueriesContext(connection) as queries:
        response = api(user).get(f"{V1}/{url}")
    assert response.status_code == 200, (url, response.content[:300])
    body = response.json()
    listed = len(body["results"] if isinstance(body, dict) and "results" in body else body)
    return len(queries.captured_queries), listed


def test_every_list_says_which_rows_it_shows():
    assert set(KINDS) == set(LISTS), "a list endpoint was added or removed: name the rows it shows in KINDS"


@pytest.mark.parametrize("name", sorted(LISTS))
def test_list_endpoint_query_count_does_not_grow_with_rows(name, api, users, rows):
    user, url = users[READERS.get(name, "admin")], LISTS[name]
    for _ in range(ROUNDS_BEFORE):
        rows.add(KINDS[name])
    before, listed_before = _count(api, user, url)
    for _ in range(ROUNDS_AFTER):
        rows.add(KINDS[name])
    after, listed_after = _count(api, user, url)
    assert listed_after > listed_before, f"{name}: the rounds added no row to the list ({listed_before})"
    assert after <= before, f"{name}: {before} queries for {listed_before} rows, {after} for {listed_after}"
