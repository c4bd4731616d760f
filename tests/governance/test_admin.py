"""The admin is a read-only window: every page loads, nothing governed can be added, changed or deleted there."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from governance.actions import discussion as discussion_actions
from governance.actions import notifications as notification_actions
from governance.actions.reviews import open_change_request
from governance.actions.datasets import import_dataset
from governance.actions.exports import export_version
from governance.actions.accounts import record_login_failure
from governance.actions.programs import create_review_policy
from governance.actions.memberships import add_member, change_program_roles
from governance.actions.identities import ProviderLogin, begin_signature, sign_in
from governance.actions.sessions import session_started
from governance.actions.tokens import create_api_key
from governance.playground import try_version
from governance.audit import write_checkpoint
from governance.models import (
    AuditEvent,
    Candidate,
    DriftAlert,
    Export,
    PromptVersion,
    Release,
    ReleaseLabel,
    Review,
    Trial,
    WebhookDelivery,
    WebhookSubscription,
)
from tests.governance.export_helpers import (  # noqa: F401  (fast_password_hashing is an autouse fixture)
    evaluate,
    PASSWORD,
    approved,
    draft,
    fast_password_hashing,
    make_team,
    optimizer_run,
    release,
    signing_key_settings,
)

pytestmark = pytest.mark.django_db

GOVERNANCE_MODELS = [m for m in admin.site._registry if m._meta.app_label == "governance"]


@pytest.fixture
def world(tmp_path):
    """One of (nearly) everything, built through the actions where an action exists."""
    team = make_team()
    root = get_user_model().objects.create_superuser("policy-admin", "pa@example.com", "Root-Password-1")
    create_review_policy(actor=root, name="strict", required_approvals=3)
    dataset = import_dataset(team.program, actor=team.author, split="val", name="val",
                             rows=[{"ticket": "Refund please", "category": "refund"}])
    run = optimizer_run(team)
    version = approved(team, run=run)
    try_version(draft(team, instructions="A newer idea."), actor=team.author, inputs={"ticket": "Refund please"})
    release(team, version)
    discussed = open_change_request(draft(team, instructions="Another idea."), actor=team.author, title="Discussed")
    discussion_actions.add_comment(discussed, actor=team.reviewer1, body=f"@{team.author.username} why?")
    discussion_actions.assign_reviewer(discussed, actor=team.author, reviewer=team.reviewer1)
    notification_actions.notify([team.author], kind="mentioned", actor=team.reviewer1, program=team.program,
                                subject_type="change_request", subject_id=discussed.pk, text="mentioned", link="/")
    notification_actions.update_settings(team.author, actor=team.author, changes={"released": {"email": False}})
    with signing_key_settings(tmp_path):
        export_version(version, actor=team.releaser)
        write_checkpoint(origin="manual")
    create_api_key(team.author, actor=team.author, name="ci", password=PASSWORD)  # AccountState rows: every user
    record_login_failure("someone")
    sso_user = sign_in(ProviderLogin(issuer="https://idp.example", subject="sub-1",
                                     claims={"preferred_username": "sso-reviewer", "name": "Sso Reviewer"}))
    session_started(sso_user, method="oidc", ip="127.0.0.1", user_agent="pytest")
    add_member(team.program, actor=root, user=sso_user)  # default roles: none (an SSO user has no global groups)
    change_program_roles(team.program, sso_user, ["reviewer"], actor=root, reason="admin test")
    begin_signature(evaluate(discussed), actor=sso_user, decision="approve", content_hash=discussed.version.content_hash)
    # No actions write these yet (the optimizer task and webhook sender do): rows made directly for the pages.
    Trial.objects.create(run=run, number=0, kind="full", score=0.8)
    Candidate.objects.create(run=run, predictor="classify", kind="instruction", index=0, content="Route it.")
    subscription = WebhookSubscription.objects.create(program=team.program, url="https://hooks.example/x",
                                                      secret="hmac-secret-value-123", events=["release.created"],
                                                      created_by=team.author)
    WebhookDelivery.objects.create(subscription=subscription, event="release.created", payload={"x": 1})
    DriftAlert.objects.create(program=team.program, version=version, dataset=dataset, baseline_score=0.8,
                              current_score=0.7, threshold=3.0)
    return team, version


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "Root-Password-1")
    client.force_login(user)
    return client


def _url(model, view, *args):
    return reverse(f"admin:governance_{model._meta.model_name}_{view}", args=args)


def test_every_governed_model_is_registered():
    from django.apps import apps

    assert set(GOVERNANCE_MODELS) == {m for m in apps.get_app_config("governance").get_models()
                                      if not m.__name__.startswith("Historical")}


def test_every_admin_page_loads_for_a_superuser_and_offers_no_writes(world, admin_client):
    for model in GOVERNANCE_MODELS:
        response = admin_client.get(_url(model, "changelist"))
        assert response.status_code == 200, model
        assert b"delete_selected" not in response.content, model
        assert _url(model, "add").encode() not in response.content, model
        obj = model._default_manager.first()
        assert obj is not None, f"the fixture should create a {model.__name__}"
        response = admin_client.get(_url(model, "change", obj.pk))
        assert response.status_code == 200, model
        assert b'name="_save"' not in response.content, model
        assert admin_client.get(_url(model, "add")).status_code == 403, model
        assert admin_client.get(_url(model, "delete", obj.pk)).status_code == 403, model


def test_changelist_search_and_filters_work(world, admin_client):
    team, version = world
    response = admin_client.get(_url(PromptVersion, "changelist"), {"status__exact": "approved"})
    assert response.status_code == 200
    assert list(response.context["cl"].queryset) == [version]
    response = admin_client.get(_url(AuditEvent, "changelist"), {"q": "version.exported"})
    assert [e.action for e in response.context["cl"].queryset] == ["version.exported"]


def test_frozen_version_change_page_is_read_only(world, admin_client):
    _, version = world
    url = _url(PromptVersion, "change", version.pk)
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert version.content_hash.encode() in page.content

    response = admin_client.post(url, {"status": "draft", "note": "edited in admin", "number": 99})
    assert response.status_code == 403
    version.refresh_from_db()
    assert (version.status, version.note, version.number) == ("approved", "", 1)


def test_frozen_content_is_refused_by_the_model_and_the_database(world):
    from django.db import transaction

    from governance.errors import FrozenVersionError

    _, version = world
    original = version.content_hash
    version.payload = {**version.payload, "lm": {**version.payload["lm"], "temperature": 0.9}}
    with pytest.raises(FrozenVersionError, match="is approved and frozen; its payload cannot change"):
        version.save()
    with pytest.raises(Exception, match="prompt version is frozen"), transaction.atomic():
        PromptVersion.objects.filter(pk=version.pk).update(payload={"program": {}, "lm": {}})
    with pytest.raises(Exception, match="prompt version is frozen"), transaction.atomic():
        PromptVersion.objects.filter(pk=version.pk).update(status="draft")
    version.refresh_from_db()
    assert (version.status, version.content_hash) == ("approved", original)


def test_draft_versions_are_not_editable_in_the_admin_either(world, admin_client):
    team, _ = world
    version = PromptVersion.objects.get(status="draft")
    assert admin_client.post(_url(PromptVersion, "change", version.pk), {"note": "x"}).status_code == 403
    version.refresh_from_db()
    assert version.note == ""


def test_audit_events_cannot_be_deleted_or_changed(world, admin_client):
    event = AuditEvent.objects.order_by("id").first()
    count = AuditEvent.objects.count()
    assert admin_client.get(_url(AuditEvent, "delete", event.pk)).status_code == 403
    assert admin_client.post(_url(AuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    response = admin_client.post(_url(AuditEvent, "changelist"),
                                 {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert AuditEvent.objects.count() == count
    assert response.status_code in (200, 302, 403)
    assert admin_client.post(_url(AuditEvent, "change", event.pk), {"reason": "rewritten"}).status_code == 403
    event.refresh_from_db()
    assert event.reason != "rewritten"


def test_exports_releases_and_reviews_are_read_only(world, admin_client):
    for model in (Export, Release, ReleaseLabel, Review):
        obj = model._default_manager.first()
        assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403
        assert admin_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
        assert model._default_manager.filter(pk=obj.pk).exists()


def test_history_pages_show_the_timeline_but_cannot_revert(world, admin_client):
    _, version = world
    response = admin_client.get(_url(PromptVersion, "history", version.pk))
    assert response.status_code == 200
    record = version.history.order_by("history_id").first()  # the draft as first created
    url = reverse("admin:governance_promptversion_simple_history", args=(version.pk, record.history_id))
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"Revert" not in page.content and b'name="_save"' not in page.content

    response = admin_client.post(url, {"status": "draft", "payload": "{}", "number": 1})
    assert response.status_code == 403
    version.refresh_from_db()
    assert version.status == "approved"


def test_webhook_secret_is_never_rendered(world, admin_client):
    subscription = WebhookSubscription.objects.get()
    page = admin_client.get(_url(WebhookSubscription, "change", subscription.pk))
    assert page.status_code == 200
    assert b"hmac-secret-value-123" not in page.content


def test_no_governed_row_is_cascade_deleted(world):
    """Retention: every foreign key between governed rows PROTECTs; history rows never cascade either."""
    from django.apps import apps
    from django.db import models
    from django.db.models import ProtectedError

    from governance.errors import FrozenVersionError

    for model in apps.get_app_config("governance").get_models():
        historical = model.__name__.startswith("Historical")
        for field in model._meta.get_fields():
            if not (field.many_to_one and field.concrete):
                continue
            allowed = {models.DO_NOTHING} | ({models.SET_NULL} if field.name == "history_user" else set()) \
                if historical else {models.PROTECT}
            assert field.remote_field.on_delete in allowed, f"{model.__name__}.{field.name}"

    team, version = world
    with pytest.raises(ProtectedError):
        team.program.delete()
    with pytest.raises(ProtectedError):
        team.reviewer1.delete()
    with pytest.raises(FrozenVersionError, match="frozen versions cannot be deleted"):
        version.delete()


def test_users_groups_and_tokens_are_read_only_in_the_admin(admin_client):
    """Role grants, password resets and tokens change only through the audited account actions."""
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token, TokenProxy

    team = make_team()
    reviewer = team.reviewer1
    token = Token.objects.create(user=reviewer)
    reviewers = Group.objects.get(name="reviewer")
    pages = {get_user_model(): reviewer.pk, Group: reviewers.pk, TokenProxy: reviewer.pk}  # tokens by user id
    for model, pk in pages.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        assert admin_client.get(reverse(f"{name}_changelist")).status_code == 200, model
        assert token.key.encode() not in admin_client.get(reverse(f"{name}_changelist")).content, model
        change = reverse(f"{name}_change", args=(pk,))
        page = admin_client.get(change)
        if model is TokenProxy:  # no detail page: Django titles it with str(token), the key
            assert page.status_code == 403
        else:
            assert page.status_code == 200 and b'name="_save"' not in page.content, model
        assert admin_client.post(change, {"name": "x", "username": "x", "is_superuser": "on"}).status_code == 403
        assert admin_client.get(reverse(f"{name}_add")).status_code == 403, model
        assert admin_client.post(reverse(f"{name}_delete", args=(pk,)), {"post": "yes"}).status_code == 403, model
    password_page = f"/admin/auth/user/{reviewer.pk}/password/"  # Django's UserAdmin form: not there
    assert b'name="password1"' not in admin_client.get(password_page, follow=True).content
    admin_client.post(password_page, {"password1": "Taken-Over-99", "password2": "Taken-Over-99"}, follow=True)
    reviewer.refresh_from_db()
    assert not reviewer.check_password("Taken-Over-99")
    assert (reviewer.username, reviewer.is_superuser) == ("rev1-triage", False)
    assert list(reviewer.groups.values_list("name", flat=True)) == ["reviewer"]
    assert Token.objects.filter(key=token.key).exists() and Group.objects.filter(name="reviewer").exists()
