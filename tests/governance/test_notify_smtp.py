"""Notification email through a real SMTP server (aiosmtpd, started here on a free port) with Django's SMTP backend:
the message arrives with its subject, recipient and link, and a server that is down costs one failed attempt that
a later due-send delivers."""

from __future__ import annotations

import email
import time
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller

from governance import notify
from governance.actions import discussion as discussion_actions
from governance.models import EmailStatus, Notification


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_settings(settings, free_tcp_port):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_tcp_port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.DEFAULT_FROM_EMAIL = "governance@example.com"
    settings.GOVERNANCE_NOTIFY_DISPATCH = "inline"
    settings.GOVERNANCE_PORTAL_URL = "https://governance.example"
    return settings


def start_server(port: int) -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


@pytest.fixture
def addressed(users):
    for name in ("author", "reviewer1"):
        type(users[name]).objects.filter(pk=users[name].pk).update(email=f"{name}@example.com")
        users[name].email = f"{name}@example.com"
    return users


def test_a_mention_is_delivered_to_a_real_smtp_server(make_cr, addressed, smtp_settings,
                                                      django_capture_on_commit_callbacks):
    controller, inbox = start_server(smtp_settings.EMAIL_PORT)
    try:
        cr = make_cr(evaluated=False)
        with django_capture_on_commit_callbacks(execute=True):
            comment = discussion_actions.add_comment(cr, actor=addressed["reviewer1"], body="@author is this right?",
                                                     anchor="instruction", predictor="classify")
    finally:
        controller.stop()
    [message] = inbox.messages
    assert inbox.recipients == [["author@example.com"]]
    assert message["From"] == "governance@example.com" and message["To"] == "author@example.com"
    assert message["Subject"].strip().startswith("[Prompt governance] Reviewer1 Example mentioned you on the instruction")
    assert message["X-Governance-Notification"].startswith("mentioned:")
    body = message.get_content()
    assert f"https://governance.example/change-requests/{cr.pk}/#comment-{comment.pk}" in body
    assert "https://governance.example/notifications/settings/" in body
    note = Notification.objects.get(recipient=addressed["author"])
    assert note.email_status == EmailStatus.SENT and note.email_attempts == 1 and note.emailed_at is not None


def test_a_server_that_is_down_costs_one_attempt_and_the_due_send_delivers_later(make_cr, addressed, smtp_settings,
                                                                                 django_capture_on_commit_callbacks):
    smtp_settings.GOVERNANCE_NOTIFY_EMAIL_BACKOFF = (0.05,)
    cr = make_cr(evaluated=False)
    with django_capture_on_commit_callbacks(execute=True):
        discussion_actions.add_comment(cr, actor=addressed["reviewer1"], body="@author ping")  # nothing listens yet
    note = Notification.objects.get(recipient=addressed["author"])
    assert (note.email_status, note.email_attempts) == (EmailStatus.PENDING, 1)
    assert "Connection refused" in note.email_error or "Error" in note.email_error
    controller, inbox = start_server(smtp_settings.EMAIL_PORT)
    try:
        time.sleep(0.1)  # past the backoff
        assert notify.send_due_emails() == [note.pk]
    finally:
        controller.stop()
    assert len(inbox.messages) == 1 and "ping" in inbox.messages[0].get_content()
    note.refresh_from_db()
    assert (note.email_status, note.email_attempts, note.email_error) == (EmailStatus.SENT, 2, "")
