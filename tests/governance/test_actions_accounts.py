"""Account actions: every change of a principal is audited with history; an administrator who sets a password
cannot sign with it (the owner must change it first), and a reset revokes the account's API tokens."""

from __future__ import annotations

import pytest

from governance.actions.accounts import (
    change_own_password,
    check_can_sign,
    create_user,
    deactivate_user,
    grant_role,
    reactivate_user,
    reset_password,
    revoke_role,
)
from governance.actions.tokens import active_keys, revoke_tokens, rotate_token
from governance.errors import AuthenticationFailed, IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AccountState
from governance.permissions import has_role
from tests.governance.conftest import AuditLog, password

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "admin-chosen-pass-1"


def test_role_grant_is_an_audited_action_with_history(users, admin):
    author = users["author"]
    log = AuditLog()
    grant_role(author, actor=admin, role="reviewer", reason="joins the review board")
    assert has_role(author, "reviewer")
    assert log.actions() == ["user.role_granted"]
    event = log.events()[0]
    assert (event.actor, event.object_type, event.object_id, event.reason) == (
        admin, "User", str(author.pk), "joins the review board")
    assert (event.before, event.after) == ({"roles": ["author"]}, {"role": "reviewer", "roles": ["author", "reviewer"]})
    history = AccountState.objects.get(user=author).history.order_by("history_id")
    assert [h.roles for h in history] == [["author"], ["author", "reviewer"]]
    assert history.last().history_user == admin

    revoke_role(author, actor=admin, role="reviewer")
    assert not has_role(author, "reviewer")
    assert log.actions() == ["user.role_granted", "user.role_revoked"]


def test_role_changes_need_an_administrator_and_a_legal_step(users, admin):
    author, reviewer = users["author"], users["reviewer1"]
    with pytest.raises(PermissionDenied, match="user 'reviewer1' needs the administrator role to grant roles"):
        grant_role(author, actor=reviewer, role="reviewer")
    with pytest.raises(IllegalTransition, match="user 'author' already has the author role"):
        grant_role(author, actor=admin, role="author")
    with pytest.raises(IllegalTransition, match="user 'author' does not have the releaser role"):
        revoke_role(author, actor=admin, role="releaser")
    with pytest.raises(InvalidInput, match="unknown role\\(s\\) boss") as info:
        grant_role(author, actor=admin, role="boss")
    assert info.value.field == "role"
    with pytest.raises(IllegalTransition, match="you cannot remove your own administrator role"):
        revoke_role(admin, actor=admin, role="admin")
    second = create_user(actor=admin, username="admin2", password="admin2-pass-123", roles=["admin"])
    revoke_role(admin, actor=second, role="admin")  # another administrator may
    assert not has_role(admin, "admin")
    assert has_role(author, "author") and not has_role(author, "reviewer")


def test_password_reset_revokes_tokens_and_blocks_signing_until_the_owner_changes_it(users, admin):
    reviewer = users["reviewer1"]
    rotate_token(actor=reviewer, password=password(reviewer))
    check_can_sign(reviewer)  # signs today
    log = AuditLog()

    reset_password(reviewer, actor=admin, password=NEW_PASSWORD, reason="forgotten")
    assert not active_keys(reviewer).exists()
    assert log.actions() == ["user.password_reset"]
    event = log.events()[0]
    assert event.after == {"by": {"id": admin.pk, "username": "admin"}, "must_change_password": True,
                           "tokens_revoked": 1}
    assert NEW_PASSWORD not in str(event.after) + event.reason
    reviewer.refresh_from_db()
    with pytest.raises(PermissionDenied, match="^user 'reviewer1' must change the password an administrator set "
                                               "before signing$"):
        check_can_sign(reviewer)

    with pytest.raises(AuthenticationFailed, match="wrong current password"):
        change_own_password(reviewer, old_password="guess", new_password="owner-only-pass-2")
    with pytest.raises(InvalidInput, match="differ from the current one"):
        change_own_password(reviewer, old_password=NEW_PASSWORD, new_password=NEW_PASSWORD)
    with pytest.raises(InvalidInput, match="too short") as short:
        change_own_password(reviewer, old_password=NEW_PASSWORD, new_password="x")
    assert short.value.field == "new_password"
    change_own_password(reviewer, old_password=NEW_PASSWORD, new_password="owner-only-pass-2")
    check_can_sign(reviewer)
    assert log.actions() == ["user.password_reset", "user.password_change_denied", "user.password_changed"]
    assert log.events()[-1].after == {"by": "owner", "cleared_must_change": True}
    state = AccountState.objects.get(user=reviewer)
    assert [h.must_change_password for h in state.history.order_by("history_id")] == [False, True, False]


def test_an_administrator_resets_others_passwords_only(users, admin):
    with pytest.raises(IllegalTransition, match="change your own password with your current password"):
        reset_password(admin, actor=admin, password=NEW_PASSWORD)
    with pytest.raises(PermissionDenied, match="needs the administrator role to reset passwords"):
        reset_password(users["reviewer1"], actor=users["author"], password=NEW_PASSWORD)
    assert users["reviewer1"].check_password(password(users["reviewer1"]))


def test_a_user_an_administrator_created_must_change_the_password_before_signing(users, admin):
    log = AuditLog()
    carol = create_user(actor=admin, username="carol", password="carol-pass-123", roles=["reviewer"])
    assert log.actions() == ["user.created"]
    with pytest.raises(PermissionDenied, match="user 'carol' must change the password an administrator set"):
        check_can_sign(carol)
    state = AccountState.objects.get(user=carol)
    assert (state.must_change_password, state.password_set_by, state.roles) == (True, admin, ["reviewer"])
    system_made = create_user(actor=None, username="dave", password="dave-pass-123")
    check_can_sign(system_made)  # set up by an operator's command: not another person's password


def test_deactivation_stops_tokens_and_signing_at_once(users, admin):
    reviewer = users["reviewer1"]
    rotate_token(actor=reviewer, password=password(reviewer))
    log = AuditLog()
    deactivate_user(reviewer, actor=admin, reason="left the company")
    reviewer.refresh_from_db()
    assert not reviewer.is_active and not active_keys(reviewer).exists()
    with pytest.raises(PermissionDenied, match="user 'reviewer1' is deactivated and cannot sign"):
        check_can_sign(reviewer)
    with pytest.raises(IllegalTransition, match="already deactivated"):
        deactivate_user(reviewer, actor=admin)
    with pytest.raises(IllegalTransition, match="cannot deactivate your own account"):
        deactivate_user(admin, actor=admin)
    reactivate_user(reviewer, actor=admin)
    reviewer.refresh_from_db()
    check_can_sign(reviewer)
    assert log.actions() == ["user.deactivated", "user.reactivated"]
    assert log.events()[0].after == {"active": False, "tokens_revoked": 1}
    assert [h.active for h in AccountState.objects.get(user=reviewer).history.order_by("history_id")] == [
        True, False, True]


def test_token_revocation_by_an_administrator(users, admin):
    reviewer = users["reviewer1"]
    with pytest.raises(IllegalTransition, match="user 'reviewer1' has no API token to revoke"):
        revoke_tokens(reviewer, actor=admin)
    rotate_token(actor=reviewer, password=password(reviewer))
    with pytest.raises(PermissionDenied, match="needs the administrator role to revoke other users' API tokens"):
        revoke_tokens(reviewer, actor=users["author"])
    log = AuditLog()
    assert revoke_tokens(reviewer, actor=admin, reason="leaked in a log") == 1
    assert not active_keys(reviewer).exists()
    assert log.actions() == ["api_token.revoked"]
