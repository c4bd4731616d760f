"""Governance fixtures: users in their roles, the demo program, and versions/change requests built through
the real actions (never by saving models directly)."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from governance.actions import (
    approve_change_request,
    create_program,
    create_user_with_roles,
    create_version,
    import_dataset,
    initial_payload,
    open_change_request,
    setup_role_groups,
)
from governance.evaluator import finish_pending
from governance.models import AuditEvent
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import MAGIC, SimulatedClassifier, load_rows

DEMO_PROGRAM = Path(__file__).resolve().parents[2] / "demo" / "support_tickets" / "program.json"
CATEGORIES = ["billing", "refund", "shipping", "account", "technical", "product_question", "feedback"]
INLINE_SPEC = {
    "name": "support_triage",
    "description": "Route a customer support ticket to the team that handles it.",
    "predictors": [{
        "name": "classify", "kind": "predict",
        "signature": {
            "instructions": "Classify the support ticket into one category.",
            "inputs": [{"name": "ticket", "type": "str", "description": "The customer's message."}],
            "outputs": [{"name": "category", "type": "choice", "choices": CATEGORIES}],
        },
        "demos": [],
    }],
}

TRIGGERS = importlib.import_module("governance.migrations.0002_integrity_triggers")

USERS = {  # username -> roles
    "author": ["author"],
    "author2": ["author"],
    "reviewer1": ["reviewer"],
    "reviewer2": ["reviewer"],
    "reviewer3": ["reviewer"],
    "releaser": ["releaser"],
    "auditor": ["auditor"],
    "outsider": ["author", "reviewer", "releaser"],  # every role, but no member of the program
    "admin": ["admin"],
}


def password(user: Any) -> str:
    """The known password of a fixture user."""
    return f"{user.get_username()}-secret-pass"


def demo_spec() -> dict[str, Any]:
    if DEMO_PROGRAM.exists():
        return json.loads(DEMO_PROGRAM.read_text())
    return copy.deepcopy(INLINE_SPEC)


class AuditLog:
    """The audit actions written since the last `mark()`: what each test asserts an action wrote."""

    def __init__(self) -> None:
        self.mark()

    def mark(self) -> None:
        self.last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def events(self) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(id__gt=self.last_id).order_by("id"))

    def actions(self) -> list[str]:
        return [event.action for event in self.events()]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """MD5 hashing for test users: PBKDF2's deliberate slowness would cost seconds per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def flush_past_integrity_triggers() -> None:
    """Empty the SQLite test database, whose integrity triggers refuse the flush's deletes.

    Every trigger in the schema (0002's, 0003's and any later migration's: the database's own list) is dropped,
    the tables are flushed, and each trigger is re-created from the SQL SQLite stored for it.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
    call_command("flush", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        for _, sql in triggers:
            cursor.execute(sql)


@pytest.fixture
def committed_db(transactional_db):
    """A database where actions really commit; the integrity triggers are lifted only to empty it afterwards.

    The teardown flush deletes every row, which SQLite's integrity triggers refuse. PostgreSQL flushes with
    TRUNCATE, which its TRUNCATE triggers refuse too; tests/pg/conftest.py lets pytest-django's flush past them.
    """
    yield
    if connection.vendor == "sqlite":
        flush_past_integrity_triggers()


@pytest.fixture
def users(db) -> dict[str, Any]:
    setup_role_groups()
    made = {}
    for username, roles in USERS.items():
        first, last = username.capitalize(), "Example"
        made[username] = create_user_with_roles(actor=None, username=username, password=f"{username}-secret-pass",
                                                roles=roles, first_name=first, last_name=last)
    return made


@pytest.fixture
def author(users):
    return users["author"]


@pytest.fixture
def reviewer1(users):
    return users["reviewer1"]


@pytest.fixture
def reviewer2(users):
    return users["reviewer2"]


@pytest.fixture
def reviewer3(users):
    return users["reviewer3"]


@pytest.fixture
def releaser(users):
    return users["releaser"]


@pytest.fixture
def auditor(users):
    return users["auditor"]


@pytest.fixture
def outsider(users):
    return users["outsider"]


@pytest.fixture
def admin(users):
    return users["admin"]


FAKE_MODEL = "text-completion-openai/fake"
TEST_ROWS = 8  # the program's test dataset: small, so each system evaluation costs a few loopback calls
# An instruction the simulated model answers every ticket correctly with (the program's own scores ~0).
WINNING_INSTRUCTIONS = f"Classify the ticket as {MAGIC} the categories."


@pytest.fixture(scope="session")
def eval_lm_server():
    """The model behind every system evaluation in these tests: a loopback OpenAI-compatible server that
    answers like a small model (wrong without demos, right when the instruction carries the magic phrase)."""
    with FakeLMServer(SimulatedClassifier(min_demos=14)) as server:
        yield server


@pytest.fixture
def program(users, eval_lm_server):
    members = [users[name] for name in ("author2", "reviewer1", "reviewer2", "reviewer3", "releaser")]
    program = create_program(actor=users["author"], slug="support", name="Support triage", spec=demo_spec(),
                             metric="choice", lm_config={"model": FAKE_MODEL, "api_base": eval_lm_server.url},
                             members=members)
    import_dataset(program, actor=users["author"], split="test", name="test slice", rows=load_rows("test")[:TEST_ROWS])
    return program


def evaluate(cr):
    """Run the system evaluations a change request waits for (as the job backend would), then reload it."""
    cr.refresh_from_db()
    finish_pending([e for e in (cr.candidate_evaluation, cr.baseline_evaluation) if e is not None])
    cr.refresh_from_db()
    return cr


@pytest.fixture
def audit(program) -> AuditLog:
    """Marks the audit trail after the fixtures' own events."""
    return AuditLog()


def payload_with(program, instructions: str) -> dict[str, Any]:
    """The program's initial payload with other instructions for its (single) predictor."""
    payload = copy.deepcopy(initial_payload(program))
    payload["program"]["predictors"][0]["signature"]["instructions"] = instructions
    return payload


@pytest.fixture
def make_version(program, author):
    counter = iter(range(1, 1000))

    def make(*, actor=None, instructions: str | None = None, **kwargs):
        text = instructions or f"Classify the ticket (variant {next(counter)})."
        return create_version(program, actor=actor or author, payload=payload_with(program, text), **kwargs)
    return make


@pytest.fixture
def make_cr(make_version, author):
    """A version in review with its open change request, evaluated by the system (unless evaluated=False)."""
    def make(*, version=None, actor=None, evaluated: bool = True, **kwargs):
        version = version or make_version()
        kwargs.setdefault("title", f"Review v{version.number}")
        cr = open_change_request(version, actor=actor or author, **kwargs)
        return evaluate(cr) if evaluated else cr
    return make


def seen(cr) -> str:
    """The content hash a reviewer reading the change request now is shown."""
    return type(cr.version).objects.values_list("content_hash", flat=True).get(pk=cr.version_id)


@pytest.fixture
def approve():
    def sign(cr, user, **kwargs):
        kwargs.setdefault("content_hash", seen(cr))
        return approve_change_request(cr, actor=user, password=password(user), **kwargs)
    return sign


@pytest.fixture
def make_approved(make_cr, approve, reviewer1, reviewer2):
    """An approved (frozen) version: two reviewers approved its change request."""
    def make(**kwargs):
        cr = make_cr(**kwargs)
        approve(cr, reviewer1)
        approve(cr, reviewer2)
        cr.version.refresh_from_db()
        return cr.version
    return make


@pytest.fixture
def pw():
    """`pw(user)`: the user's known password."""
    return password
