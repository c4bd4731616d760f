"""Roles per program (issue 18): every action's check reads the roles its user holds on that program, the
global author/reviewer/releaser groups are no right by themselves, and memberships change only through audited
actions (governance.actions.memberships)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.actions import (
    create_program,
    create_user_with_roles,
    import_dataset,
    pin_fallback,
    release_version,
    request_changes,
)
from governance.actions import exports as export_actions
from governance.actions import releases as release_actions
from governance.actions import reviews as review_actions
from governance.actions import runs as run_actions
from governance.actions import memberships as membership_actions
from governance.actions import versions as version_actions
from governance.actions.memberships import (
    add_member,
    change_program_roles,
    grant_membership,
    remove_member,
    revoke_membership,
    set_program_roles,
)
from governance.actions.rights import allowed_actions, refusal
from governance.actions.runs import start_run
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AuditEvent, ProgramMembership, ReleaseLabel
from governance.permissions import (
    has_role,
    is_member,
    program_roles,
    programs_with_role,
    remembered_memberships,
    user_roles,
    visible_programs,
)
from tests.governance.conftest import FAKE_MODEL, TEST_ROWS, AuditLog, demo_spec, evaluate, password, seen
from tests.optimizer.simulated import load_rows

# --- every action of governance.actions.rights, per program --------------------------------------------------


@dataclass(frozen=True)
class Case:
    """An object in a state where `actor` (a fixture user) may take `action`; `role`: what the action needs on
    the object's program (None: membership alone)."""

    build: Callable[[dict[str, Any]], Any]
    actor: str
    role: str | None


def _cr(f: dict[str, Any]) -> Any:
    return f["make_cr"]()


def _sent_back(f: dict[str, Any]) -> Any:
    cr = f["make_cr"]()
    request_changes(cr, actor=f["users"]["reviewer1"], reason="tighten it", content_hash=seen(cr))
    cr.refresh_from_db()
    return cr


def _failed_evaluation(f: dict[str, Any]) -> Any:
    program = f["program"]
    working = dict(program.lm_config)
    program.lm_config = {**working, "api_base": "http://127.0.0.1:9/v1", "num_retries": 0}  # nothing listens
    program.save(update_fields=["lm_config"])  # test set-up of a broken endpoint, not a governed change
    cr = f["make_cr"](version=f["make_version"](instructions="Evaluated against a dead endpoint."))
    program.lm_config = working
    program.save(update_fields=["lm_config"])
    return cr


def _run(f: dict[str, Any]) -> Any:
    return start_run(_with_training_data(f), actor=f["users"]["author"], num_trials=4, enqueue=False)


def _with_training_data(f: dict[str, Any]) -> Any:
    program, author = f["program"], f["users"]["author"]
    for split, size in (("train", 40), ("val", 20)):
        import_dataset(program, actor=author, split=split, name=f"{split} slice", rows=load_rows(split)[:size])
    return program


def _label(f: dict[str, Any], *, fallback: bool = False) -> ReleaseLabel:
    releaser = f["users"]["releaser"]
    first = f["make_approved"]()
    release_version(first, actor=releaser, reason="go live")
    if fallback:
        release_version(f["make_approved"](), actor=releaser, reason="next")
        pin_fallback(first.program, actor=releaser, version=first, reason="known good")
    return ReleaseLabel.objects.get(program=first.program, name="production")


CASES: dict[tuple[str, str], Case] = {
    ("ChangeRequest", "approve"): Case(_cr, "reviewer1", "reviewer"),
    ("ChangeRequest", "reject"): Case(_cr, "reviewer1", "reviewer"),
    ("ChangeRequest", "request_changes"): Case(_cr, "reviewer1", "reviewer"),
    ("ChangeRequest", "resubmit"): Case(_sent_back, "author", "author"),
    ("ChangeRequest", "withdraw"): Case(_cr, "author", "author"),
    ("ChangeRequest", "reevaluate"): Case(_failed_evaluation, "reviewer2", None),
    ("PromptVersion", "edit"): Case(lambda f: f["make_version"](), "author", "author"),
    ("PromptVersion", "withdraw"): Case(lambda f: f["make_version"](), "author", "author"),
    ("PromptVersion", "submit"): Case(lambda f: f["make_version"](), "author", "author"),
    ("PromptVersion", "retire"): Case(lambda f: f["make_approved"](), "releaser", "releaser"),
    ("PromptVersion", "release"): Case(lambda f: f["make_approved"](), "releaser", "releaser"),
    ("PromptVersion", "export"): Case(lambda f: f["make_approved"](), "reviewer1", None),
    ("OptimizationRun", "cancel"): Case(_run, "author", "author"),
    ("ReleaseLabel", "rollback"): Case(_label, "releaser", "releaser"),
    ("ReleaseLabel", "pin_fallback"): Case(_label, "releaser", "releaser"),
    ("ReleaseLabel", "kill_switch"): Case(lambda f: _label(f, fallback=True), "releaser", "releaser"),
    ("Program", "start_run"): Case(_with_training_data, "author", "author"),
    ("Program", "move_labels"): Case(lambda f: f["program"], "releaser", "releaser"),
}

# The action tables of the workflow (what governance.actions.rights gathers for the portal and the API).
WORKFLOW_CHECKS = {
    "ChangeRequest": {**review_actions.REVIEW_CHECKS, **review_actions.REEVALUATE_CHECKS},
    "PromptVersion": {**version_actions.VERSION_CHECKS, **review_actions.SUBMIT_CHECKS,
                      **release_actions.VERSION_RELEASE_CHECKS, **export_actions.EXPORT_CHECKS},
    "OptimizationRun": run_actions.RUN_CHECKS,
    "ReleaseLabel": release_actions.LABEL_CHECKS,
    "Program": {**run_actions.PROGRAM_RUN_CHECKS, **release_actions.PROGRAM_RELEASE_CHECKS},
}


def test_every_workflow_action_has_a_per_program_case():
    actions = {(kind, name) for kind, checks in WORKFLOW_CHECKS.items() for name in checks}
    assert actions == set(CASES), "add a Case for each new action (and drop the ones that are gone)"


@pytest.fixture
def other_program(users, program):
    """A second program the same people work on, with other roles."""
    return create_program(actor=users["author"], slug="billing", name="Billing", spec=demo_spec(),
                          members=[users[n] for n in ("author2", "reviewer1", "reviewer2", "reviewer3", "releaser")])


@pytest.fixture
def fixtures(users, program, make_cr, make_version, make_approved):
    return {"users": users, "program": program, "make_cr": make_cr, "make_version": make_version,
            "make_approved": make_approved}


@pytest.mark.parametrize(("kind", "action"), sorted(CASES))
def test_each_action_follows_the_roles_held_on_its_program(kind, action, fixtures, other_program, admin):
    case = CASES[(kind, action)]
    obj, user = case.build(fixtures), fixtures["users"][case.actor]
    program = fixtures["program"]
    assert type(obj).__name__ == kind and action in allowed_actions(obj, user)
    held = sorted(program_roles(user, program))

    if case.role is None:  # membership is what counts: no role needed, and none helps without it
        set_program_roles(program, user, [], actor=admin, reason="read only")
        assert refusal(obj, user, action) is None or not isinstance(refusal(obj, user, action), PermissionDenied)
        revoke_membership(program, user, actor=admin, reason="left")
        refused = refusal(obj, user, action)
        assert isinstance(refused, PermissionDenied)
        assert refused.message == f"user {case.actor!r} is not a member of program support"
        return

    # The role moves to the other program; the user keeps the global group and the membership of this one.
    set_program_roles(program, user, [r for r in held if r != case.role], actor=admin, reason="moved")
    set_program_roles(other_program, user, [case.role], actor=admin, reason="moved")
    assert user.groups.filter(name=case.role).exists(), "the global group alone is no right on a program"
    refused = refusal(obj, user, action)
    assert isinstance(refused, PermissionDenied), refused
    assert f"needs the {case.role} role" in refused.message and refused.message.endswith(" on program support")
    assert action not in allowed_actions(obj, user)

    set_program_roles(program, user, held, actor=admin, reason="back")
    assert action in allowed_actions(obj, user)


# --- one person, two programs, two roles ----------------------------------------------------------------------


@pytest.fixture
def mia(users, program, other_program, eval_lm_server):
    """Reviewer on support, author on billing, no global role at all."""
    user = create_user_with_roles(actor=None, username="mia", password="mia-secret-pass", first_name="Mia",
                                  last_name="Example")
    set_program_roles(program, user, ["reviewer"], actor=users["admin"], reason="reviews support")
    set_program_roles(other_program, user, ["author"], actor=users["admin"], reason="writes billing")
    other_program.lm_config = {"model": FAKE_MODEL, "api_base": eval_lm_server.url}
    other_program.save(update_fields=["lm_config"])  # test set-up: the fake model for billing's evaluations
    import_dataset(other_program, actor=users["author"], split="test", name="test slice",
                   rows=load_rows("test")[:TEST_ROWS])
    return user


def test_a_reviewer_on_one_program_and_author_on_another(mia, program, other_program, users, make_cr, approve,
                                                         make_version):
    support_cr = make_cr()
    assert approve(support_cr, mia).decision == "approve"
    draft = version_actions.create_version(other_program, actor=mia, payload=version_actions.initial_payload(
        other_program))
    with pytest.raises(PermissionDenied, match="^user 'mia' needs the author role to create prompt versions on "
                                               "program support$"):
        make_version(actor=mia)

    billing_cr = evaluate(review_actions.open_change_request(draft, actor=mia, title="mia's change"))
    with pytest.raises(PermissionDenied, match="^user 'mia' needs the reviewer role to review change requests on "
                                               "program billing$"):
        approve(billing_cr, mia)
    allowed = allowed_actions(billing_cr, mia)
    assert "withdraw" in allowed and not allowed & {"approve", "reject", "request_changes"}
    assert {"reject", "request_changes"} <= allowed_actions(make_cr(), mia)
    # The segregation rules hold on billing whatever roles mia gets there: she authored the version.
    set_program_roles(other_program, mia, ["author", "reviewer"], actor=users["admin"], reason="both")
    refused = refusal(billing_cr, mia, "approve")
    assert refused.message == "user 'mia' is the author of version 1 and cannot review it"


def test_admins_act_everywhere_and_global_auditors_read_everywhere(program, other_program, users):
    admin, auditor = users["admin"], users["auditor"]
    assert not ProgramMembership.objects.filter(user__in=[admin, auditor]).exists()
    for role in ("author", "reviewer", "releaser", "auditor"):
        assert has_role(admin, role, program) and has_role(admin, role, other_program)
    assert has_role(auditor, "auditor", program) and not has_role(auditor, "reviewer", program)
    assert is_member(auditor, other_program) and set(visible_programs(auditor)) == {program, other_program}
    assert set(programs_with_role(auditor, "auditor")) == {program, other_program}
    assert not programs_with_role(auditor, "reviewer").exists()


def test_a_member_without_roles_sees_the_program_and_may_do_nothing(program, users, make_version, admin):
    reviewer1 = users["reviewer1"]
    set_program_roles(program, reviewer1, [], actor=admin, reason="read only")
    assert is_member(reviewer1, program) and program in visible_programs(reviewer1)
    assert allowed_actions(make_version(), reviewer1) == set()
    assert allowed_actions(program, reviewer1) == set()


# --- the membership actions -----------------------------------------------------------------------------------


def test_grant_change_revoke_are_audited_with_before_and_after(program, users, admin):
    auditor, log = users["auditor"], AuditLog()
    membership = grant_membership(program, auditor, actor=admin, roles=["auditor", "reviewer"], reason="QA")
    assert (membership.roles, membership.source, membership.granted_by) == (["auditor", "reviewer"], "manual",
                                                                            admin)
    change_program_roles(program, auditor, ["auditor"], actor=admin, reason="reviews no more")
    revoke_membership(program, auditor, actor=admin, reason="project over")
    assert log.actions() == ["program.member_added", "program.member_roles_changed", "program.member_removed"]
    granted, changed, revoked = log.events()
    who = {"id": auditor.pk, "username": "auditor"}
    assert granted.after == {"member": who, "roles": ["auditor", "reviewer"], "source": "manual"}
    assert (changed.before["roles"], changed.after["roles"], changed.reason) == (["auditor", "reviewer"],
                                                                                 ["auditor"], "reviews no more")
    assert revoked.before == {"member": who, "roles": ["auditor"], "source": "manual"} and revoked.after is None
    assert {e.program for e in log.events()} == {program} and {e.actor for e in log.events()} == {admin}
    history = ProgramMembership.history.filter(program=program, user=auditor).order_by("history_id")
    assert [(h.history_type, h.roles, h.history_user) for h in history] == [
        ("+", ["auditor", "reviewer"], admin), ("~", ["auditor"], admin), ("-", ["auditor"], admin)]


def test_membership_refusals(program, users, admin, author):
    reviewer1, log = users["reviewer1"], AuditLog()
    with pytest.raises(PermissionDenied, match="^user 'author' needs the administrator role to manage roles on "
                                               "program support$"):
        set_program_roles(program, reviewer1, ["author"], actor=author)  # the owner never chooses roles
    with pytest.raises(PermissionDenied):
        set_program_roles(program, reviewer1, ["reviewer", "releaser"], actor=reviewer1)  # nor anyone for self
    with pytest.raises(InvalidInput, match="unknown program role.s. admin; expected some of author, reviewer, "
                                           "releaser, auditor") as bad:
        set_program_roles(program, reviewer1, ["admin"], actor=admin)
    assert bad.value.field == "roles"
    with pytest.raises(InvalidInput, match="source must be manual or oidc") as bad_source:
        set_program_roles(program, reviewer1, ["reviewer"], actor=admin, source="ldap")
    assert bad_source.value.field == "source"
    with pytest.raises(IllegalTransition, match="user 'reviewer1' is already a member of support"):
        grant_membership(program, reviewer1, actor=admin, roles=["reviewer"])
    with pytest.raises(IllegalTransition, match="user 'reviewer1' is already a member of support"):
        membership_actions._grant(program, reviewer1, ["reviewer"], actor=admin, reason="",
                                  source="manual")  # what a concurrent grant that lost the race meets
    with pytest.raises(IllegalTransition, match="user 'reviewer1' already holds exactly the roles reviewer on "
                                                "program support"):
        change_program_roles(program, reviewer1, ["reviewer"], actor=admin)
    with pytest.raises(IllegalTransition, match="user 'auditor' is not a member of support"):
        change_program_roles(program, users["auditor"], ["reviewer"], actor=admin)
    with pytest.raises(IllegalTransition, match="user 'author' owns support and cannot be removed"):
        revoke_membership(program, author, actor=admin)
    assert log.actions() == []


def test_set_program_roles_writes_only_changes_and_records_the_source(program, users, admin):
    reviewer1, log = users["reviewer1"], AuditLog()
    set_program_roles(program, reviewer1, ["reviewer"], actor=admin)
    assert log.actions() == [], "the same roles: nothing to record"
    set_program_roles(program, reviewer1, ["reviewer", "releaser"], actor=None, source="oidc",
                      reason="group gov-support-releasers")
    set_program_roles(program, users["auditor"], ["auditor"], actor=None, source="oidc", reason="group audit")
    assert log.actions() == ["program.member_roles_changed", "program.member_added"]
    changed = log.events()[0]
    assert (changed.actor, changed.before["source"], changed.after) == (None, "manual", {
        "member": {"id": reviewer1.pk, "username": "reviewer1"}, "roles": ["releaser", "reviewer"],
        "source": "oidc"})
    assert ProgramMembership.objects.get(program=program, user=users["auditor"]).source == "oidc"


def test_owners_add_members_with_their_default_roles_and_remove_them(program, users, author):
    auditor, outsider = users["auditor"], users["outsider"]
    add_member(program, actor=author, user=outsider, reason="joins")
    assert program_roles(outsider, program) == {"author", "reviewer", "releaser"}  # the global groups
    add_member(program, actor=author, user=auditor)
    assert program_roles(auditor, program) == {"auditor"}
    with pytest.raises(PermissionDenied, match="only the owner of support or an administrator may add members"):
        add_member(program, actor=users["reviewer1"], user=users["admin"])
    remove_member(program, actor=author, user=outsider, reason="left")
    assert program_roles(outsider, program) is None


def test_memberships_are_read_once_per_user_in_a_remembered_block(program, other_program, users,
                                                                  django_assert_num_queries):
    reviewer1 = users["reviewer1"]
    user_roles(reviewer1)  # the global roles are read once per user instance, memberships or not
    with remembered_memberships():
        with django_assert_num_queries(1):
            for _ in range(3):
                assert has_role(reviewer1, "reviewer", program) and has_role(reviewer1, "reviewer", other_program)
                assert not has_role(reviewer1, "releaser", program)
    with CaptureQueriesContext(connection) as outside:
        has_role(reviewer1, "reviewer", program)
        has_role(reviewer1, "reviewer", program)
    assert len(outside) == 2, "outside a block each check reads the database (memberships may change)"


def test_a_revoked_membership_stops_the_next_check(program, users, admin, make_cr):
    cr = make_cr()
    reviewer1 = users["reviewer1"]
    assert "approve" in allowed_actions(cr, reviewer1)
    revoke_membership(program, reviewer1, actor=admin, reason="left the team")
    assert refusal(cr, reviewer1, "approve").message == "user 'reviewer1' is not a member of program support"
    assert not AuditEvent.objects.filter(action="signature.failed").exists()


def test_a_block_forgets_what_a_membership_action_changed(program, users, admin):
    reviewer1 = users["reviewer1"]
    with remembered_memberships():
        assert has_role(reviewer1, "reviewer", program)
        set_program_roles(program, reviewer1, ["releaser"], actor=admin, reason="now releases")
        assert not has_role(reviewer1, "reviewer", program) and has_role(reviewer1, "releaser", program)


def test_a_page_reads_each_users_memberships_once(client, program, users, make_cr):
    for _ in range(3):
        make_cr(evaluated=False)
    reviewer1 = users["reviewer1"]
    assert client.login(username="reviewer1", password=password(reviewer1))
    with CaptureQueriesContext(connection) as page:
        assert client.get("/").status_code == 200  # the dashboard asks each change request's review checks
    roles_reads = [q["sql"] for q in page.captured_queries
                   if q["sql"].startswith('SELECT "governance_programmembership"."program_id"')]
    assert len(roles_reads) == 1, roles_reads
