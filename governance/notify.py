"""Notification delivery: who is told about what, in the portal and by email.

The domain signals are sent on commit (governance.signals), so a rolled-back change tells nobody. Each receiver
here decides the recipients and the sentence, and writes the rows through governance.actions.notifications
(which applies each person's settings). Emails then go through Django's email framework (EMAIL_BACKEND: a file
or the console in the demo, SMTP in production; docs/operations.md), outside the request that caused them:

- with a broker, the Celery task `governance.tasks.send_notification_email` makes one attempt per message;
- without one, a one-thread pool in this process does;
- GOVERNANCE_NOTIFY_DISPATCH=inline sends in the caller (tests).

A failed send never reaches the action that caused it (it has committed already): it is logged, recorded on the
row and retried with backoff (a timer in this process, or the beat job `governance.tasks.send_due_notification_emails`
which also picks up anything a restart dropped), up to MAX_EMAIL_ATTEMPTS.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import close_old_connections, transaction
from django.dispatch import receiver
from django.urls import reverse

from governance import signals
from governance.actions import discussion as discussion_actions
from governance.actions import notifications as notification_actions
from governance.audit import printed_name
from governance.jobs import send_task
from governance.models import (
    ChangeRequest,
    Comment,
    Decision,
    EmailStatus,
    Notification,
    NotificationKind,
    PromptVersion,
    Review,
    Role,
    RunStatus,
)
from governance.permissions import users_with_role

logger = logging.getLogger(__name__)

MAX_EMAIL_ATTEMPTS = 4
EMAIL_BACKOFF_SECONDS = (30, 300, 1800)  # before attempts 2..4


# --- who and what -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    kind: str
    recipients: list[Any]
    text: str
    link: str
    subject_type: str
    subject_id: Any
    program: Any
    actor: Any = None


def _name(user: Any) -> str:
    return printed_name(user) if user is not None else "The system"


def _cr_link(cr: ChangeRequest, fragment: str = "") -> str:
    return reverse("change_request_detail", args=[cr.pk]) + fragment


def _cr_words(cr: ChangeRequest) -> str:
    return f"CR-{cr.pk} \u201c{cr.title}\u201d ({cr.program.slug} v{cr.version.number})"


def proposers(cr: ChangeRequest) -> list[Any]:
    """The people a decision on the change concerns: its opener and the version's author."""
    return [cr.opened_by, cr.version.created_by]


def people_with_role(program: Any, role: str) -> list[Any]:
    """The program's people who hold `role` on it (the permission checks' own answer)."""
    return users_with_role(discussion_actions.program_people(program), role, program)


def _about_cr(cr: ChangeRequest, kind: str, recipients: list[Any], text: str, actor: Any) -> Message:
    return Message(kind, recipients, text, _cr_link(cr), "change_request", cr.pk, cr.program, actor)


def review_requested(cr: ChangeRequest, actor: Any, resubmitted: bool = False) -> Message:
    """The assigned reviewers, or (nobody assigned yet) everyone who may review the change."""
    assigned = [a.reviewer for a in discussion_actions.active_assignments(cr)]
    recipients = assigned or discussion_actions.eligible_reviewers(cr)
    again = " again, with changes" if resubmitted else ""
    return _about_cr(cr, NotificationKind.REVIEW_REQUESTED, recipients,
                     f"{_name(actor)} asks for your review of {_cr_words(cr)}{again}.", actor)


def decision(cr: ChangeRequest, actor: Any, kind: str) -> Message:
    verb = {NotificationKind.CHANGES_REQUESTED: "requested changes to", NotificationKind.APPROVED: "gave the last "
            "approval of", NotificationKind.REJECTED: "rejected"}[kind]
    recipients = proposers(cr)
    if kind == NotificationKind.APPROVED:  # the people who can now release it
        recipients += people_with_role(cr.program, Role.RELEASER)
    return _about_cr(cr, kind, recipients, f"{_name(actor)} {verb} {_cr_words(cr)}.", actor)


def released(release: Any, actor: Any, rolled_back: bool = False) -> Message:
    """The version's author, the openers of its change requests and its approvers."""
    version: PromptVersion = release.version
    crs = list(ChangeRequest.objects.filter(version=version).select_related("opened_by"))
    approvers = [r.reviewer for r in Review.objects.filter(version=version, decision=Decision.APPROVE, voided=False)
                 .select_related("reviewer")]
    recipients = [version.created_by, *(cr.opened_by for cr in crs), *approvers]
    what = "rolled back" if rolled_back else "released"
    text = (f"{_name(actor)} {what} label \u201c{release.label}\u201d of {release.program.slug} to v{version.number}"
            f"{f' (was v{release.previous_version.number})' if release.previous_version_id else ''}.")
    return Message(NotificationKind.RELEASED, recipients, text, reverse("releases", args=[release.program.slug]),
                   "release", release.pk, release.program, actor)


def run_outcome(run: Any) -> Message | None:
    """Tell the run's starter it succeeded (with what it proposed) or failed; a cancelled run tells nobody."""
    link = reverse("run_detail", args=[run.pk])
    if run.status == RunStatus.SUCCEEDED:
        cr = ChangeRequest.objects.filter(version__run=run).order_by("-id").first()
        proposal = f"; it proposes {_cr_words(cr)}" if cr is not None else ""
        return Message(NotificationKind.RUN_FINISHED, [run.started_by],
                       f"Optimization run {run.pk} of {run.program.slug} finished ({run.stop_reason or 'done'}){proposal}.",
                       _cr_link(cr) if cr is not None else link, "run", run.pk, run.program)
    if run.status == RunStatus.FAILED:
        return Message(NotificationKind.RUN_FAILED, [run.started_by],
                       f"Optimization run {run.pk} of {run.program.slug} failed: {(run.error or run.stop_reason)[:200]}",
                       link, "run", run.pk, run.program)
    return None


def drift(alert: Any) -> Message:
    """The program's owner and releasers: they decide whether to roll back or re-optimize."""
    program = alert.program
    recipients = [program.owner, *people_with_role(program, Role.RELEASER)]
    text = (f"Drift on {program.slug}: production v{alert.version.number} scores {alert.current_score * 100:.1f}% on "
            f"new labeled data, {alert.drop_points:.1f} points below {alert.baseline_score * 100:.1f}%.")
    return Message(NotificationKind.DRIFT_ALERT, recipients, text, reverse("program_detail", args=[program.slug]),
                   "drift_alert", alert.pk, program)


def comment_messages(comment: Comment, actor: Any, mentioned: Iterable[int], edited: bool = False) -> list[Message]:
    """Mentioned people are told they were mentioned; the change's proposers and the thread's other participants
    that a comment was added (not for edits, and never twice)."""
    cr = comment.change_request
    mentioned_users = list(comment.mentions.filter(pk__in=list(mentioned)))
    link = _cr_link(cr, f"#comment-{comment.pk}")
    where = f" on the {comment.anchor_label}" if comment.anchor else ""
    said = f"\u201c{comment.body[:140]}\u201d"
    messages = [Message(NotificationKind.MENTIONED, mentioned_users,
                        f"{_name(actor)} mentioned you{where} in {_cr_words(cr)}: {said}", link, "comment",
                        comment.pk, cr.program, actor)]
    if not edited:
        root = comment.parent or comment
        participants = [root.author, *(reply.author for reply in root.replies.select_related("author"))]
        told = {user.pk for user in mentioned_users}
        others = [user for user in [*proposers(cr), *participants] if user.pk not in told]
        kind_of = "review comment" if comment.review else "reply" if comment.parent_id else "comment"
        messages.append(Message(NotificationKind.COMMENTED, others,
                                f"{_name(actor)} added a {kind_of}{where} on {_cr_words(cr)}: {said}", link,
                                "comment", comment.pk, cr.program, actor))
    return messages


def assigned(assignment: Any, actor: Any) -> Message:
    cr = assignment.change_request
    due = f", due {assignment.due_date.isoformat()}" if assignment.due_date else ""
    return _about_cr(cr, NotificationKind.REVIEW_REQUESTED, [assignment.reviewer],
                     f"{_name(actor)} assigned you to review {_cr_words(cr)}{due}.", actor)


# --- writing the rows ------------------------------------------------------------------------------------------


def deliver(build: Callable[[], Message | list[Message] | None], what: str) -> list[Notification]:
    """Write the notifications `build` describes and send their emails once they are committed.

    Receivers run after the action committed: whatever fails here is logged and never reaches the action.
    """
    try:
        with transaction.atomic():
            built = build()
            messages = built if isinstance(built, list) else [built] if built is not None else []
            rows = [row for message in messages for row in _write(message)]
            for row in rows:
                if row.email_status == EmailStatus.PENDING:
                    transaction.on_commit(lambda pk=row.pk: _send_soon_safely(pk))
            return rows
    except Exception:
        logger.exception("could not write notifications for %s", what)
        return []


def _write(message: Message) -> list[Notification]:
    return notification_actions.notify(message.recipients, kind=message.kind, actor=message.actor,
                                       program=message.program, subject_type=message.subject_type,
                                       subject_id=message.subject_id, text=message.text, link=message.link)


# --- email ------------------------------------------------------------------------------------------------------


def dispatch_mode() -> str:
    """"celery" with a broker, "thread" without; GOVERNANCE_NOTIFY_DISPATCH overrides ("inline": in the caller)."""
    configured = getattr(settings, "GOVERNANCE_NOTIFY_DISPATCH", "")
    if configured:
        return configured
    return "celery" if settings.CELERY_BROKER_URL else "thread"


def _send_soon_safely(notification_id: int) -> None:
    """Hand the email on; whatever goes wrong is logged, never raised into the request that caused it."""
    try:
        send_email_soon(notification_id)
    except Exception:
        logger.exception("could not send the email of notification %s", notification_id)


def send_email_soon(notification_id: int, delay: float = 0.0) -> None:
    mode = dispatch_mode()
    if mode == "celery":
        if delay <= 0:  # later attempts: the beat job sends what is due
            send_task("governance.tasks.send_notification_email", notification_id)
    elif mode == "inline":
        if delay <= 0:
            attempt_email(notification_id)
    elif delay > 0:
        timer = threading.Timer(delay, send_email_soon, args=[notification_id])
        timer.daemon = True
        timer.start()
    else:
        _pool().submit(_attempt_in_thread, notification_id)


def attempt_email(notification_id: int) -> bool:
    """One send of the notification's email if it is pending, due and not in flight; True when it went out."""
    notification = notification_actions.claim_email(notification_id)
    if notification is None:
        return False
    error = _send(notification)
    attempts = notification.email_attempts + 1
    retry_in = float(_backoff()[min(attempts, len(_backoff())) - 1]) if error and attempts < MAX_EMAIL_ATTEMPTS \
        else None
    notification_actions.record_email_attempt(notification, error=error, retry_in=retry_in)
    if retry_in is not None:
        logger.warning("notification email %s to %s failed (%s); retry %d/%d in %.0f s", notification.pk,
                       notification.recipient.email, error, attempts, MAX_EMAIL_ATTEMPTS - 1, retry_in)
        send_email_soon(notification.pk, delay=retry_in)
    elif error:
        logger.error("notification email %s to %s given up after %d attempts: %s", notification.pk,
                     notification.recipient.email, attempts, error)
    return not error


def _backoff() -> tuple[float, ...]:
    return tuple(getattr(settings, "GOVERNANCE_NOTIFY_EMAIL_BACKOFF", EMAIL_BACKOFF_SECONDS))


def email_message(notification: Notification) -> EmailMessage:
    base = settings.GOVERNANCE_PORTAL_URL.rstrip("/")
    kind = NotificationKind(notification.kind).label
    body = (f"{notification.text}\n\nOpen it: {base}{notification.link}\n\n--\n{kind}. Choose what you are told, "
            f"and how: {base}{reverse('notification_settings')}\n")
    subject = f"[{settings.GOVERNANCE_EMAIL_SUBJECT_PREFIX}] {notification.text}"
    return EmailMessage(subject=subject[:200].replace("\n", " "), body=body, to=[notification.recipient.email],
                        headers={"X-Governance-Notification": f"{notification.kind}:{notification.pk}"})


def _send(notification: Notification) -> str:
    """"" when the backend accepted the message, else the error (network and SMTP errors are retried)."""
    try:
        email_message(notification).send(fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def send_due_emails(limit: int = 200) -> list[int]:
    """Send every pending email that is due (the beat job; after a restart)."""
    ids = notification_actions.due_emails(limit)
    for notification_id in ids:
        send_email_soon(notification_id)
    return ids


def _attempt_in_thread(notification_id: int) -> None:
    try:
        attempt_email(notification_id)
    except Exception:  # a pool thread has nobody to raise to
        logger.exception("notification email %s failed unexpectedly", notification_id)
    finally:
        close_old_connections()


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-email")
        return _executor


# --- signal receivers -------------------------------------------------------------------------------------------


@receiver(signals.change_request_opened, dispatch_uid="notify.change_request_opened")
def _on_opened(sender: Any, instance: Any, actor: Any = None, resubmitted: bool = False, **kwargs: Any) -> None:
    deliver(lambda: review_requested(instance, actor, resubmitted), "change request opened")


@receiver(signals.change_request_changes_requested, dispatch_uid="notify.changes_requested")
def _on_changes_requested(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    deliver(lambda: decision(instance, actor, NotificationKind.CHANGES_REQUESTED), "changes requested")


@receiver(signals.change_request_approved, dispatch_uid="notify.change_request_approved")
def _on_approved(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    deliver(lambda: decision(instance, actor, NotificationKind.APPROVED), "change request approved")


@receiver(signals.change_request_rejected, dispatch_uid="notify.change_request_rejected")
def _on_rejected(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    deliver(lambda: decision(instance, actor, NotificationKind.REJECTED), "change request rejected")


@receiver(signals.version_released, dispatch_uid="notify.version_released")
def _on_released(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    deliver(lambda: released(instance, actor), "version released")


@receiver(signals.release_rolled_back, dispatch_uid="notify.release_rolled_back")
def _on_rolled_back(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    deliver(lambda: released(instance, actor, rolled_back=True), "release rolled back")


@receiver(signals.run_finished, dispatch_uid="notify.run_finished")
def _on_run_finished(sender: Any, instance: Any, **kwargs: Any) -> None:
    deliver(lambda: run_outcome(instance), "run finished")


@receiver(signals.drift_alert_raised, dispatch_uid="notify.drift_alert_raised")
def _on_drift(sender: Any, instance: Any, **kwargs: Any) -> None:
    deliver(lambda: drift(instance), "drift alert")


@receiver(signals.comment_added, dispatch_uid="notify.comment_added")
def _on_comment(sender: Any, instance: Any, actor: Any = None, mentioned: Iterable[int] = (), edited: bool = False,
                **kwargs: Any) -> None:
    deliver(lambda: comment_messages(instance, actor, mentioned, edited), "comment added")


@receiver(signals.reviewer_assigned, dispatch_uid="notify.reviewer_assigned")
def _on_assigned(sender: Any, instance: Any, actor: Any = None, **kwargs: Any) -> None:
    deliver(lambda: assigned(instance, actor), "reviewer assigned")
