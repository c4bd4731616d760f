"""Every state change of a governed object, one function per operation (Zulip's actions layer).

Each action checks permission, checks state (IllegalTransition names what is wrong), changes the rows,
writes the audit events and queues domain signals on commit, in one transaction. Views, serializers, admin
and tasks call these functions and never save governed models themselves.
"""

from governance.actions.memberships import (
    change_program_roles, grant_membership, revoke_membership, set_program_roles,
)
from governance.actions.datasets import active_datasets, examples_for, import_dataset, parse_rows, validate_rows
from governance.actions.discussion import (
    add_comment, assign_reviewer, edit_comment, reopen_comment, resolve_comment, unassign_reviewer,
)
from governance.actions.notifications import mark_read as mark_notifications_read
from governance.actions.notifications import update_settings as update_notification_settings
from governance.actions.programs import (
    add_member, create_program, create_review_policy, parse_spec, remove_member, update_program,
)
from governance.actions.releases import (
    check_releaser, label_history, pin_fallback, release_version, rollback, set_kill_switch,
)
from governance.actions.reviews import (
    allowed_review_actions, approve_change_request, live_approvals, open_change_request, reject_change_request,
    request_changes, required_approvals, resubmit_change_request, submit_for_review, withdraw_change_request,
)
from governance.actions.accounts import (
    change_own_password, check_can_sign, create_service_account, create_user, deactivate_user, grant_role,
    reactivate_user, reset_password, revoke_role, setup_role_groups,
)
from governance.actions.accounts import create_user as create_user_with_roles
from governance.actions.runs import cancel_run, start_run
from governance.actions.tokens import create_api_key, revoke_api_key, revoke_tokens, rotate_token
from governance.actions.versions import (
    active_change_request, can_edit, create_version, edit_version, initial_payload, retire_version,
    validate_payload, withdraw_version,
)

__all__ = [
    # programs
    "create_program", "update_program", "add_member", "remove_member", "create_review_policy", "parse_spec",
    # memberships (roles per program)
    "set_program_roles", "grant_membership", "change_program_roles", "revoke_membership",
    # datasets
    "import_dataset", "active_datasets", "examples_for", "parse_rows", "validate_rows",
    # versions
    "create_version", "edit_version", "submit_for_review", "withdraw_version", "retire_version",
    "initial_payload", "validate_payload", "active_change_request", "can_edit",
    # reviews
    "open_change_request", "approve_change_request", "reject_change_request", "request_changes",
    "resubmit_change_request", "withdraw_change_request", "allowed_review_actions", "required_approvals",
    "live_approvals",
    # releases
    "release_version", "rollback", "pin_fallback", "set_kill_switch", "label_history", "check_releaser",
    # accounts (users, roles, passwords, API tokens)
    "create_user_with_roles", "setup_role_groups", "create_user", "deactivate_user", "reactivate_user",
    "change_own_password", "reset_password", "grant_role", "revoke_role", "rotate_token", "revoke_tokens",
    "check_can_sign", "create_service_account", "create_api_key", "revoke_api_key",
    # discussion and notifications
    "add_comment", "edit_comment", "resolve_comment", "reopen_comment", "assign_reviewer", "unassign_reviewer",
    "mark_notifications_read", "update_notification_settings",
    # optimization runs and monitoring
    "start_run", "cancel_run",
]
