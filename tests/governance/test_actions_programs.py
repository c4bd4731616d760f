"""Programs, members, review policies, users and role groups through their actions."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from governance.actions import (
    add_member,
    create_program,
    create_review_policy,
    create_user_with_roles,
    remove_member,
    setup_role_groups,
    update_program,
)
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AuditEvent, Program
from governance.permissions import ROLE_NAMES
from optimizer.program import Program as SpecProgram
from optimizer.program import content_hash
from tests.governance.conftest import AuditLog, demo_spec

pytestmark = pytest.mark.django_db


def _create(actor, **overrides):
    values = {"actor": actor, "slug": "triage2", "name": "Triage 2", "spec": demo_spec(), "metric": "choice"}
    values.update(overrides)
    return create_program(**values)


def test_create_program_normalizes_spec_adds_owner_and_audits(users, author):
    log = AuditLog()
    program = _create(author, members=[users["reviewer1"]])
    assert program.owner == author
    assert set(program.members.values_list("username", flat=True)) == {"author", "reviewer1"}
    assert program.spec == SpecProgram.from_dict(demo_spec()).to_dict()
    assert log.actions() == ["program.created"]
    event = log.events()[0]
    assert event.actor == author and event.program == program
    assert event.after["spec_hash"] == content_hash(program.spec)
    assert event.after["members"] == ["author", "reviewer1"]


def test_create_program_needs_author_role(users):
    log = AuditLog()
    with pytest.raises(PermissionDenied, match="user 'reviewer1' needs the author role to create a program"):
        _create(users["reviewer1"])
    assert log.actions() == [] and not Program.objects.filter(slug="triage2").exists()


@pytest.mark.parametrize(("overrides", "field", "fragment"), [
    ({"spec": {"predictors": []}}, "spec", "a program needs at least one predictor"),
    ({"spec": {"predictors": [{"name": "x", "signature": {"inputs": [{"name": "a", "type": "blob"}],
                                                          "outputs": [{"name": "b"}]}}]}},
     "spec", "unknown type 'blob'"),
    ({"spec": "not a program"}, "spec", "must be a JSON object"),
    ({"slug": "has space"}, "slug", "may contain only letters"),
    ({"slug": "support"}, "slug", "a program with slug 'support' already exists"),
    ({"metric": "accuracy"}, "metric", "metric 'accuracy' must be one of exact, choice, f1"),
    ({"lm_config": {"model": "x", "api_key": "sk-1"}}, "lm_config", "must not contain api_key"),
    ({"lm_config": {"model": "x", "max_tokens": 0}}, "lm_config", "max_tokens must be an integer >= 1"),
    ({"name": "  "}, "name", "name is required"),
])
def test_create_program_rejects_bad_input(program, author, overrides, field, fragment):
    log = AuditLog()
    with pytest.raises(InvalidInput, match=fragment) as info:
        _create(author, **overrides)
    assert info.value.field == field
    assert log.actions() == []


def test_only_an_administrator_may_name_code_as_the_metric_and_it_must_load(author, admin, program):
    # The metric produces the scores the review gate reads: an author under review must not pick the code.
    log = AuditLog()
    with pytest.raises(PermissionDenied, match="'operator:is_not' names code to import; only an administrator"):
        _create(author, metric="operator:is_not")
    with pytest.raises(PermissionDenied, match="only an administrator"):
        update_program(program, actor=author, metric="operator:is_not")
    with pytest.raises(InvalidInput, match="cannot import module 'myproject.metrics'") as info:
        _create(admin, metric="myproject.metrics:strict_match")
    assert info.value.field == "metric" and log.actions() == []
    assert _create(admin, metric="optimizer.metrics:exact_match").metric == "optimizer.metrics:exact_match"
    assert update_program(program, actor=author, metric="exact").metric == "exact", "registered names: anyone"


def test_an_owner_may_tighten_a_programs_review_but_not_loosen_it_or_change_who_signs(author, admin, program):
    three = create_review_policy(actor=admin, name="three", required_approvals=3)
    grouped = create_review_policy(actor=admin, name="compliance", required_approvals=3,
                                   reviewer_group=Group.objects.create(name="compliance"))
    update_program(program, actor=admin, review_policy=three)
    log = AuditLog()
    with pytest.raises(PermissionDenied, match="^the default review policy is weaker than the program's review "
                                               "policy 'three' \\(3 approvals and the test-score gate\\)"):
        update_program(program, actor=author, review_policy=None)
    with pytest.raises(PermissionDenied, match="review policy 'compliance' is weaker .* or changes who may sign"):
        update_program(program, actor=author, review_policy=grouped)
    assert log.actions() == []
    four = create_review_policy(actor=admin, name="four", required_approvals=4)
    assert update_program(program, actor=author, review_policy=four).review_policy == four
    assert update_program(program, actor=admin, review_policy=None).review_policy is None


def test_weaker_review_policy_needs_admin(users, author, admin):
    weak = create_review_policy(actor=admin, name="single", required_approvals=1)
    with pytest.raises(PermissionDenied, match="review policy 'single' is weaker than the default"):
        _create(author, review_policy=weak)
    strict = create_review_policy(actor=admin, name="three", required_approvals=3)
    assert _create(author, review_policy=strict).review_policy == strict
    assert _create(admin, slug="admins", review_policy=weak).review_policy == weak


def test_create_review_policy_is_admin_only_and_validated(users, author, admin):
    log = AuditLog()
    with pytest.raises(PermissionDenied, match="needs the administrator role to define review policies"):
        create_review_policy(actor=author, name="p")
    with pytest.raises(InvalidInput, match="required_approvals must be an integer >= 1, got 0"):
        create_review_policy(actor=admin, name="p", required_approvals=0)
    group = Group.objects.create(name="compliance")
    policy = create_review_policy(actor=admin, name="p", required_approvals=3, reviewer_group=group)
    with pytest.raises(InvalidInput, match="a review policy named 'p' already exists"):
        create_review_policy(actor=admin, name="p")
    assert log.actions() == ["review_policy.created"]
    assert log.events()[0].after == {"name": "p", "required_approvals": 3, "reviewer_group": "compliance",
                                     "require_test_not_below_production": True, "reapproval_on_edit": True}
    assert policy.reapproval_on_edit is True


def test_update_program_records_before_and_after(program, author, audit):
    update_program(program, actor=author, name="Support triage v2", drift_threshold=5, reason="rename")
    program.refresh_from_db()
    assert program.name == "Support triage v2" and program.drift_threshold == 5.0
    assert audit.actions() == ["program.updated"]
    event = audit.events()[0]
    assert event.before["name"] == "Support triage" and event.after["name"] == "Support triage v2"
    assert event.reason == "rename"


def test_update_program_owner_only_and_nothing_to_change(program, users, audit):
    with pytest.raises(PermissionDenied, match="only the owner of support or an administrator may change it"):
        update_program(program, actor=users["author2"], name="x")
    with pytest.raises(InvalidInput, match="nothing to change on program support"):
        update_program(program, actor=users["author"], name="Support triage")
    update_program(program, actor=users["admin"], description="admins may change it")
    assert audit.actions() == ["program.updated"]


def test_spec_interface_is_fixed_once_versions_exist(program, author, make_version, audit):
    spec = copy.deepcopy(program.spec)
    spec["predictors"][0]["signature"]["instructions"] = "New template instructions."
    update_program(program, actor=author, spec=spec)  # no versions yet: anything valid goes
    make_version()
    spec["predictors"][0]["signature"]["instructions"] = "Template instructions, again."
    update_program(program, actor=author, spec=spec)  # instructions are not the interface
    spec["predictors"][0]["signature"]["outputs"][0]["choices"].append("sales")
    with pytest.raises(IllegalTransition, match="may change instructions, descriptions and prefixes but not "
                                                "predictors, fields or choices"):
        update_program(program, actor=author, spec=spec)
    assert audit.actions() == ["program.updated", "version.created", "program.updated"]


def test_members_added_and_removed_by_owner(program, users, audit):
    auditor, outsider = users["auditor"], users["outsider"]
    add_member(program, actor=users["author"], user=outsider, reason="joins the team")
    assert program.members.filter(pk=outsider.pk).exists()
    with pytest.raises(IllegalTransition, match="user 'outsider' is already a member of support"):
        add_member(program, actor=users["author"], user=outsider)
    with pytest.raises(PermissionDenied, match="only the owner of support or an administrator may add members"):
        add_member(program, actor=users["reviewer1"], user=auditor)
    remove_member(program, actor=users["author"], user=outsider, reason="left")
    with pytest.raises(IllegalTransition, match="user 'author' owns support and cannot be removed"):
        remove_member(program, actor=users["author"], user=users["author"])
    with pytest.raises(IllegalTransition, match="user 'outsider' is not a member of support"):
        remove_member(program, actor=users["author"], user=outsider)
    assert audit.actions() == ["program.member_added", "program.member_removed"]
    assert audit.events()[0].after == {"member": {"id": outsider.pk, "username": "outsider"},  # default roles
                                       "roles": ["author", "releaser", "reviewer"], "source": "manual"}


def test_create_user_with_roles_is_audited_without_password(users, admin):
    log = AuditLog()
    user = create_user_with_roles(actor=admin, username="carol", password="carol-pass-123", roles=["reviewer"],
                                  first_name="Carol", last_name="Reviewer")
    assert user.check_password("carol-pass-123")
    assert list(user.groups.values_list("name", flat=True)) == ["reviewer"]
    assert log.actions() == ["user.created"]
    event = log.events()[0]
    assert event.after == {"username": "carol", "name": "Carol Reviewer", "email": "", "roles": ["reviewer"]}
    assert "carol-pass-123" not in str(event.after)


def test_create_user_checks_actor_and_input(users):
    with pytest.raises(PermissionDenied, match="needs the administrator role to create users"):
        create_user_with_roles(actor=users["author"], username="x", password="p")
    with pytest.raises(InvalidInput, match="unknown role\\(s\\) boss"):
        create_user_with_roles(actor=None, username="x", password="p", roles=["boss"])
    with pytest.raises(InvalidInput, match="user 'author' already exists"):
        create_user_with_roles(actor=None, username="author", password="p")


def test_setup_roles_command_creates_groups_once(db):
    out = StringIO()
    call_command("setup_roles", stdout=out)
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLE_NAMES)
    assert "role groups: admin, auditor, author, releaser, reviewer" in out.getvalue()
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["roles.created"]
    setup_role_groups()  # idempotent, and nothing to audit the second time
    assert AuditEvent.objects.count() == 1
