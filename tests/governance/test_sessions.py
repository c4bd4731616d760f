"""Portal sessions: recorded at login and logout, ended by the idle timeout and the absolute lifetime, "log out
everywhere" by the user or an administrator, a session list for administrators; all audited."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from governance.models import PortalSession
from governance.session_policy import SEEN, STARTED
from tests.governance.conftest import password

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    response = client.post("/login/", {"username": user.username, "password": password(user)})
    assert response.status_code == 302, response.content[:500]
    return client


def age_session(client: Client, key: str, seconds: float) -> None:
    session = client.session
    session[key] = time.time() - seconds
    session.save()


def test_login_and_logout_are_recorded_and_audited(reviewer1, audit):
    client = signed_in(reviewer1)
    row = PortalSession.objects.get(user=reviewer1)
    assert (row.method, row.ended_at) == ("password", None)

    client.post("/logout/")

    row.refresh_from_db()
    assert row.ended_at is not None and row.end_reason == "logout"
    assert audit.actions() == ["session.started", "session.ended"]


def test_an_idle_session_ends_audited(reviewer1, settings, audit):
    settings.GOVERNANCE_SESSION_IDLE_SECONDS = 600
    client = signed_in(reviewer1)
    assert client.get("/").status_code == 200
    age_session(client, SEEN, 601)

    response = client.get("/programs/")

    assert response.status_code == 302 and response["Location"] == "/login/?next=%2Fprograms%2F"
    assert client.get("/").status_code == 302  # signed out
    assert PortalSession.objects.get(user=reviewer1).end_reason == "idle for more than 600 s"
    assert audit.actions() == ["session.started", "session.expired"]


def test_the_absolute_lifetime_ends_an_active_session(reviewer1, settings, audit):
    settings.GOVERNANCE_SESSION_MAX_SECONDS = 3600
    client = signed_in(reviewer1)
    age_session(client, STARTED, 3601)

    assert client.get("/").status_code == 302
    assert audit.actions() == ["session.started", "session.expired"]
    assert "absolute lifetime" in audit.events()[-1].reason


def test_log_out_everywhere_ends_every_session_of_the_user(reviewer1, reviewer2, audit):
    laptop, phone, other = signed_in(reviewer1), signed_in(reviewer1), signed_in(reviewer2)
    time.sleep(0.01)  # the stamp must come after the sessions' start

    response = laptop.post("/account/sessions/end/", {"reason": "lost my phone"})

    assert response.status_code == 302
    assert laptop.get("/").status_code == 302 and phone.get("/").status_code == 302
    assert other.get("/").status_code == 200
    assert not PortalSession.objects.filter(user=reviewer1, ended_at__isnull=True).exists()
    assert "sessions.ended_everywhere" in audit.actions()
    ended = [e for e in audit.events() if e.action == "sessions.ended_everywhere"][0]
    assert ended.after["sessions_ended"] == 2 and ended.reason == "lost my phone"
    again = signed_in(reviewer1)  # a new login after that is fine
    assert again.get("/").status_code == 200


def test_administrators_list_and_end_a_users_sessions(admin, reviewer1, reviewer2, audit):
    reviewers = signed_in(reviewer1)
    admin_client = Client()
    admin_client.force_login(admin)

    page = admin_client.get("/accounts/reviewer1/sessions/")
    assert page.status_code == 200 and b"password" in page.content and b"end-sessions-button" in page.content
    assert signed_in(reviewer2).post("/accounts/reviewer1/sessions/end/").status_code == 403
    assert reviewers.get("/").status_code == 200

    response = admin_client.post("/accounts/reviewer1/sessions/end/", {"reason": "offboarding"})

    assert response.status_code == 302
    assert reviewers.get("/").status_code == 302
    assert admin_client.get("/").status_code == 200
    assert [e.actor_id for e in audit.events() if e.action == "sessions.ended_everywhere"] == [admin.pk]
