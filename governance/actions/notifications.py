"""Notifications: the rows that tell one person about one event, their settings, reading them, and the state of
their email delivery.

Rows are written by the system (governance.notify receives the domain signals on commit and calls `notify`);
people only read them and choose, per kind, whether they want them in the portal and by email. Notifications
are messages about events the audit trail already holds, so writing, reading and emailing them is not audited;
changing one's settings is (it decides what a person is told).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from governance.actions._common import user_ref
from governance.audit import record_event
from governance.errors import InvalidInput, NotFound, PermissionDenied
from governance.models import EmailStatus, Notification, NotificationKind, NotificationSetting, Program

CHANNELS = ("in_app", "email")
# Email is on by default for everything except comments on one's change or thread (the portal shows those).
DEFAULTS: dict[str, dict[str, bool]] = {
    kind: {"in_app": True, "email": kind != NotificationKind.COMMENTED} for kind in NotificationKind.values
}
EMAIL_LEASE_SECONDS = 120  # an attempt in flight holds the row this long; a crashed sender's row is then due again


# --- settings ---------------------------------------------------------------------------------------------------


def settings_of(user: Any) -> dict[str, dict[str, bool]]:
    """Every kind with the user's choice for each channel (the defaults where they chose nothing)."""
    return settings_of_users([user])[user.pk]


def settings_of_users(users: Iterable[Any]) -> dict[Any, dict[str, dict[str, bool]]]:
    """user id -> `settings_of` that user, read in one query for all of them."""
    chosen: dict[Any, dict[str, dict[str, bool]]] = {user.pk: {} for user in users}
    for row in NotificationSetting.objects.filter(user_id__in=list(chosen)):
        chosen[row.user_id][row.kind] = {"in_app": row.in_app, "email": row.email}
    return {pk: {kind: {**DEFAULTS[kind], **mine.get(kind, {})} for kind in NotificationKind.values}
            for pk, mine in chosen.items()}


def parse_settings(changes: Any) -> dict[str, dict[str, bool]]:
    """{kind: {"in_app": bool, "email": bool}} (either channel may be left out); 400 naming the bad entry."""
    if not isinstance(changes, Mapping) or not changes:
        raise InvalidInput("settings must map notification kinds to {in_app, email} choices", field="settings")
    parsed: dict[str, dict[str, bool]] = {}
    for kind, choice in changes.items():
        if kind not in NotificationKind.values:
            raise InvalidInput(f"{kind!r} is not a notification kind; kinds: {', '.join(NotificationKind.values)}",
                               field="settings")
        if not isinstance(choice, Mapping) or not choice or set(choice) - set(CHANNELS):
            raise InvalidInput(f"settings.{kind} must name in_app and/or email", field=f"settings.{kind}")
        for channel, value in choice.items():
            if not isinstance(value, bool):
                raise InvalidInput(f"settings.{kind}.{channel} must be true or false", field=f"settings.{kind}.{channel}")
        parsed[kind] = dict(choice)
    return parsed


@transaction.atomic
def update_settings(user: Any, *, actor: Any, changes: Any) -> dict[str, dict[str, bool]]:
    """Set one's own choices per kind and channel; audited as "notification_settings.changed"."""
    if actor is None or actor.pk != user.pk:
        raise PermissionDenied("people choose their own notifications; nobody else may change them")
    parsed = parse_settings(changes)
    before = settings_of(user)
    for kind, choice in parsed.items():
        NotificationSetting.objects.update_or_create(user=user, kind=kind, defaults={**before[kind], **choice})
    after = settings_of(user)
    changed = {kind: after[kind] for kind in after if after[kind] != before[kind]}
    if changed:
        record_event("notification_settings.changed", actor=actor, obj=user, object_type="User",
                     before={kind: before[kind] for kind in changed}, after={"user": user_ref(user), **changed})
    return after


# --- writing (the system) --------------------------------------------------------------------------------------


@transaction.atomic
def notify(recipients: Iterable[Any], *, kind: str, actor: Any, program: Program | None, subject_type: str,
           subject_id: Any, text: str, link: str) -> list[Notification]:
    """One notification per recipient who wants it (the actor is never told about their own act).

    In-app and email follow each recipient's settings; email needs an address. A recipient who wants neither gets
    no row. Returns the rows written; those with email_status "pending" are for the sender.
    """
    rows = []
    people = _distinct_active(recipients, skip=actor)
    settings = settings_of_users(people)
    for user in people:
        wanted = settings[user.pk][kind]
        email = wanted["email"] and bool(user.email)
        if not (wanted["in_app"] or email):
            continue
        rows.append(Notification(recipient=user, kind=kind, actor=actor if getattr(actor, "pk", None) else None,
                                 program=program, subject_type=subject_type, subject_id=str(subject_id),
                                 text=text[:500], link=link[:300], in_app=wanted["in_app"],
                                 email_status=EmailStatus.PENDING if email else EmailStatus.NONE,
                                 email_next_attempt_at=timezone.now() if email else None))
    return Notification.objects.bulk_create(rows)


def _distinct_active(users: Iterable[Any], *, skip: Any) -> list[Any]:
    seen, kept = {getattr(skip, "pk", None)}, []
    for user in users:
        if user is None or user.pk in seen or not user.is_active:
            continue
        seen.add(user.pk)
        kept.append(user)
    return kept


# --- reading --------------------------------------------------------------------------------------------------


def inbox(user: Any) -> QuerySet[Notification]:
    """The user's portal notifications, newest first."""
    return Notification.objects.filter(recipient=user, in_app=True).select_related("actor", "program")


def unread_count(user: Any) -> int:
    if not getattr(user, "is_authenticated", False):
        return 0
    return inbox(user).filter(read_at=None).count()


def own_notification(user: Any, notification_id: Any) -> Notification:
    """One of the user's notifications, or 404 (someone else's is as absent as a missing one)."""
    try:
        return inbox(user).get(pk=int(notification_id))
    except (Notification.DoesNotExist, TypeError, ValueError):
        raise NotFound(f"no notification {notification_id} of yours", field="id") from None


def mark_read(user: Any, ids: Iterable[Any] | None = None) -> int:
    """Mark the given notifications of the user read (all unread ones when `ids` is None); returns how many."""
    unread = inbox(user).filter(read_at=None)
    if ids is not None:
        wanted = [own_notification(user, value).pk for value in ids]
        unread = unread.filter(pk__in=wanted)
    return unread.update(read_at=timezone.now())


def mark_unread(user: Any, notification_id: Any) -> Notification:
    notification = own_notification(user, notification_id)
    Notification.objects.filter(pk=notification.pk).update(read_at=None)
    notification.read_at = None
    return notification


# --- email delivery state (governance.notify sends) ------------------------------------------------------------


def due_emails(limit: int = 200) -> list[int]:
    return list(Notification.objects.filter(email_status=EmailStatus.PENDING, email_next_attempt_at__lte=timezone.now())
                .order_by("email_next_attempt_at").values_list("pk", flat=True)[:limit])


@transaction.atomic
def claim_email(notification_id: int) -> Notification | None:
    """The notification if its email is pending and due, leased to this sender (None otherwise)."""
    now = timezone.now()
    row = Notification.objects.select_for_update(no_key=True).select_related("recipient", "program", "actor") \
        .filter(pk=notification_id, email_status=EmailStatus.PENDING, email_next_attempt_at__lte=now).first()
    if row is None:
        return None
    row.email_next_attempt_at = now + dt.timedelta(seconds=EMAIL_LEASE_SECONDS)
    row.save(update_fields=["email_next_attempt_at"])
    return row


def record_email_attempt(notification: Notification, *, error: str = "", retry_in: float | None = None) -> Notification:
    """After one send: sent (no error), due again in `retry_in` seconds, or given up."""
    notification.email_attempts += 1
    notification.email_error = error[:2000]
    if not error:
        notification.email_status, notification.emailed_at = EmailStatus.SENT, timezone.now()
        notification.email_next_attempt_at = None
    elif retry_in is not None:
        notification.email_next_attempt_at = timezone.now() + dt.timedelta(seconds=retry_in)
    else:
        notification.email_status, notification.email_next_attempt_at = EmailStatus.FAILED, None
    notification.save(update_fields=["email_attempts", "email_error", "email_status", "emailed_at",
                                     "email_next_attempt_at"])
    return notification
