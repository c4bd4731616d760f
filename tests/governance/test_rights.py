"""allowed_actions / refusal (governance.actions.rights): the portal's buttons come from the actions' own checks,
so a button is shown exactly when the action would accept the request, and a refusal is the action's error."""

from __future__ import annotations

import pytest

from governance.actions import import_dataset, release_version
from governance.actions.memberships import change_program_roles
from governance.actions.rights import allowed_actions, refusal
from governance.actions.runs import cancel_run, start_run
from governance.errors import IllegalTransition, PermissionDenied
from governance.models import ReleaseLabel, RunStatus
from tests.optimizer.simulated import load_rows


@pytest.fixture
def datasets(program, author):
    for split, size in (("train", 40), ("val", 20)):
        import_dataset(program, actor=author, split=split, name=f"{split} slice", rows=load_rows(split)[:size])
    return program


def _login(client, user):
    assert client.login(username=user.get_username(), password=f"{user.get_username()}-secret-pass")


def test_a_run_starter_without_the_author_role_gets_no_cancel_button_and_a_403(client, datasets, author, admin):
    """The old view showed "Cancel run" to whoever started the run; cancel_run wants the author role."""
    run = start_run(datasets, actor=author, num_trials=4, enqueue=False)
    _login(client, author)
    assert 'id="cancel-run"' in client.get(f"/runs/{run.pk}/").content.decode()
    change_program_roles(run.program, author, [], actor=admin, reason="moved to another team")
    assert 'id="cancel-run"' not in client.get(f"/runs/{run.pk}/").content.decode()
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and not run.cancel_requested


def test_refusal_is_the_error_the_action_raises(datasets, author, reviewer1):
    run = start_run(datasets, actor=author, num_trials=4, enqueue=False)
    assert allowed_actions(run, author) == {"cancel"} and allowed_actions(run, reviewer1) == set()
    refused = refusal(run, reviewer1, "cancel")
    with pytest.raises(PermissionDenied) as raised:
        cancel_run(run, actor=reviewer1)
    assert isinstance(refused, PermissionDenied) and refused.message == raised.value.message
    assert refusal(run, author, "cancel") is None
    cancel_run(run, actor=author)
    run.refresh_from_db()
    assert allowed_actions(run, author) == set()
    assert refusal(run, author, "cancel").message == f"run {run.pk} is cancelled; only queued or running runs can " \
                                                      "be cancelled"


def test_version_actions_follow_role_authorship_and_state(make_version, make_approved, author, users, reviewer1,
                                                          releaser):
    draft = make_version()
    assert allowed_actions(draft, author) == {"edit", "submit", "withdraw"}
    assert allowed_actions(draft, users["author2"]) == {"submit"}, "another author may propose, not edit"
    assert allowed_actions(draft, reviewer1) == set()
    approved = make_approved()
    assert allowed_actions(approved, releaser) == {"retire", "release", "export"}
    assert allowed_actions(approved, reviewer1) == {"export"}, "an approver neither releases nor retires"
    assert allowed_actions(approved, users["outsider"]) == set(), "not a member of the program"
    assert isinstance(refusal(approved, author, "edit"), IllegalTransition)


def test_label_and_program_actions(make_approved, author, releaser):
    version = make_approved()
    release_version(version, actor=releaser, reason="go live")
    label = ReleaseLabel.objects.get(program=version.program, name="production")
    assert allowed_actions(label, releaser) == {"rollback", "pin_fallback"}
    assert refusal(label, releaser, "kill_switch").message == (
        "label 'production' of support has no pinned fallback version; pin one before engaging the kill switch")
    assert allowed_actions(label, author) == set()
    assert allowed_actions(version.program, author) == {"start_run", "import_dspy"}
    assert allowed_actions(version.program, releaser) == {"move_labels"}


def test_an_anonymous_user_may_do_nothing(make_version):
    from django.contrib.auth.models import AnonymousUser

    assert allowed_actions(make_version(), AnonymousUser()) == set()
