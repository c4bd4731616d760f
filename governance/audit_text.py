"""Audit events in words, for every page that lists them: a sentence per event ("Lena Park released version 2
as production"), the affected object's name and page, and only the values that changed.

The stored events are never reworded: all of this is computed for display from the event's own action, object
and before/after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.urls import NoReverseMatch, reverse

from governance.models import AuditEvent, ChangeRequest, Program, PromptVersion, Review, Role
from governance.permissions import has_role

# What each action did, as a phrase after the actor's name. {label}, {version}, {before_version} come from the
# event's before/after; {object} is the affected object's name ("version 3", "change request 12").
WORDING: dict[str, str] = {
    "program.created": "created the program", "program.updated": "changed the program's settings",
    "program.member_added": "added a member to the program", "program.member_removed": "removed a program member",
    "program.member_roles_changed": "changed a member's roles on the program",
    "dataset.imported": "imported a labeled dataset",
    "version.created": "created {object}", "version.edited": "edited draft {object}",
    "version.submitted": "submitted {object} for review", "version.approved": "approved {object}: it is now frozen",
    "version.rejected": "rejected {object}", "version.retired": "retired {object}",
    "version.returned_to_draft": "sent {object} back to draft", "version.withdrawn": "withdrew {object}",
    "version.exported": "downloaded the signed bundle of {object}",
    "version.dspy_imported": "imported {object} from a DSPy file",
    "version.dspy_exported": "exported {object} as a DSPy file",
    "change_request.opened": "opened {object}", "change_request.approved": "completed the approvals of {object}",
    "change_request.rejected": "closed {object} as rejected",
    "change_request.changes_requested": "sent {object} back for changes",
    "change_request.withdrawn": "withdrew {object}", "change_request.resubmitted": "resubmitted {object}",
    "change_request.evaluated": "recorded the system evaluation of {object}",
    "change_request.reevaluated": "asked the system to evaluate {object} again",
    "review.approved": "approved and signed", "review.rejected": "rejected and signed",
    "review.changes_requested": "requested changes and signed", "review.voided": "voided a signature",
    "review.commented": "commented on the review", "signature.failed": "failed to sign: re-authentication refused",
    "comment.added": "commented", "comment.edited": "edited a comment", "comment.resolved": "resolved a comment",
    "reviewer.assigned": "assigned a reviewer", "reviewer.unassigned": "unassigned a reviewer",
    "reviewer.due_date_changed": "changed a review's due date",
    "release.created": "released version {version} as {label}",
    "release.rolled_back": "rolled {label} back from version {before_version} to version {version}",
    "release.fallback_pinned": "pinned version {version} as the kill-switch fallback of {label}",
    "release.kill_switch_on": "engaged the kill switch of {label}: it serves fallback version {version}",
    "release.kill_switch_off": "released the kill switch of {label}: it serves version {version} again",
    "run.started": "started {object}", "run.queued": "put {object} back in the queue",
    "run.running": "{object} started running", "run.executing": "{object} started on a worker", "run.succeeded": "{object} finished and proposed a version",
    "run.failed": "{object} failed", "run.cancelled": "{object} was cancelled",
    "run.cancel_requested": "asked to cancel {object}", "run.requeued": "requeued {object} (its worker was lost)",
    "run.resumed": "resumed {object}", "run.redispatched": "sent {object} to a worker again",
    "evaluation.requested": "asked for {object}", "evaluation.started": "{object} started",
    "evaluation.running": "{object} started", "evaluation.succeeded": "{object} finished",
    "evaluation.failed": "{object} failed", "evaluation.cancelled": "{object} was cancelled",
    "drift.alert": "raised a drift alert: production scores lower on new data",
    "user.created": "created an account", "user.updated": "updated an account",
    "user.deactivated": "deactivated an account", "user.reactivated": "reactivated an account",
    "user.password_changed": "changed a password", "user.password_reset": "reset a password",
    "service_account.created": "created a service account", "roles.created": "set up the role groups",
    "api_key.created": "created an API key", "api_key.revoked": "revoked an API key",
    "api_token.rotated": "rotated an API token", "api_token.revoked": "revoked an API token",
    "auth.locked_out": "was locked out after repeated failed logins",
    "webhook.created": "added a webhook", "webhook.deleted": "removed a webhook",
    "review_policy.created": "set the review policy", "playground.called": "tried a version in the playground",
    "notification_settings.changed": "changed their notification settings",
    "session.started": "signed in", "session.ended": "signed out", "session.expired": "was signed out (session expired)",
    "sessions.ended_everywhere": "ended every session of an account",
}

OBJECT_NAMES = {"PromptVersion": "version", "ChangeRequest": "change request", "OptimizationRun": "run",
                "Evaluation": "system evaluation", "Release": "label move", "Review": "signature",
                "ApiKey": "API key", "User": "account", "Dataset": "dataset", "Program": "program",
                "Comment": "comment", "DriftAlert": "drift alert", "WebhookSubscription": "webhook"}


@dataclass(frozen=True)
class Change:
    key: str
    old: str
    new: str


@dataclass(frozen=True)
class EventView:
    """One event as the page shows it."""

    event: AuditEvent
    sentence: str
    target: str  # the affected object's name
    url: str  # where it is in the portal ("" when it has no page)
    changes: list[Change]


def _show(value: Any) -> str:
    if value is None or value == "":
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= 160 else text[:159] + "\u2026"
    return str(value)


def changes(before: Any, after: Any) -> list[Change]:
    """The keys whose value differs between before and after (every key when one side is missing)."""
    old = before if isinstance(before, dict) else ({} if before is None else {"value": before})
    new = after if isinstance(after, dict) else ({} if after is None else {"value": after})
    return [Change(key, _show(old.get(key)), _show(new.get(key)))
            for key in [*old, *(k for k in new if k not in old)] if old.get(key) != new.get(key)]


def _version_numbers(event: AuditEvent) -> dict[str, Any]:
    before, after = event.before or {}, event.after or {}
    return {"label": after.get("label") or before.get("label") or "a label",
            "version": after.get("version", "?"), "before_version": before.get("version", "?")}


def sentence(event: AuditEvent, target: str) -> str:
    """"Lena Park released version 2 as production"; unknown actions read from their code ("membership granted")."""
    phrase = WORDING.get(event.action)
    if phrase is None:
        subject, _, verb = event.action.partition(".")
        phrase = f"{verb.replace('_', ' ')} {subject.replace('_', ' ')}".strip() + (f" ({target})" if target else "")
    try:
        text = phrase.format(object=target or "an object", **_version_numbers(event))
    except (KeyError, IndexError):
        text = phrase
    if phrase.startswith("{object}"):  # the object did it (a run finished): the actor is who set it going
        return text[0].upper() + text[1:]
    actor = event.actor_name if event.actor_name and event.actor_name.lower() != "system" else "The system"
    return f"{actor} {text}"


def _link_maps(events: list[AuditEvent]) -> dict[str, dict[str, Any]]:
    """Per object type, what the links need, fetched in one query per type present on the page."""
    ids: dict[str, set[str]] = {}
    for event in events:
        ids.setdefault(event.object_type, set()).add(event.object_id)

    def pks(kind: str) -> list[int]:
        return [int(i) for i in ids.get(kind, ()) if i.isdigit()]

    return {
        "PromptVersion": {str(v.pk): (v.program.slug, v.number) for v in
                          PromptVersion.objects.filter(pk__in=pks("PromptVersion")).select_related("program")},
        "Review": {str(pk): cr for pk, cr in Review.objects.filter(pk__in=pks("Review"))
                   .values_list("pk", "change_request_id")},
        "Program": {str(pk): slug for pk, slug in Program.objects.filter(pk__in=pks("Program"))
                    .values_list("pk", "slug")},
        "ChangeRequest": {str(pk): pk for pk in ChangeRequest.objects.filter(pk__in=pks("ChangeRequest"))
                          .values_list("pk", flat=True)},
    }


def _target(event: AuditEvent, maps: dict[str, dict[str, Any]], viewer: Any) -> tuple[str, str]:
    """(name, url) of the event's object; url is "" when the portal has no page for it."""
    kind, oid = event.object_type, event.object_id
    name = f"{OBJECT_NAMES.get(kind, kind.lower())} {oid}".strip()
    slug = event.program.slug if event.program_id else ""
    try:
        if kind == "PromptVersion" and oid in maps["PromptVersion"]:
            slug, number = maps["PromptVersion"][oid]
            return f"version {number}", reverse("version_detail", args=[slug, number])
        if kind == "ChangeRequest" and oid in maps["ChangeRequest"]:
            return f"change request {oid}", reverse("change_request_detail", args=[int(oid)])
        if kind == "Review" and oid in maps["Review"]:
            cr = maps["Review"][oid]
            return f"a signature on change request {cr}", reverse("change_request_detail", args=[cr])
        if kind == "OptimizationRun" and oid.isdigit():
            return f"run {oid}", reverse("run_detail", args=[int(oid)])
        if kind == "Program" and oid in maps["Program"]:
            return f"program {maps['Program'][oid]}", reverse("program_detail", args=[maps["Program"][oid]])
        if kind == "Release" and slug:
            return name, reverse("releases", args=[slug])
        if kind == "User" and has_role(viewer, Role.ADMIN):
            username = (event.after or {}).get("username") or (event.before or {}).get("username")
            if username:
                return f"account {username}", reverse("account_detail", args=[username])
    except NoReverseMatch:
        pass
    return name, ""


def present(events: list[AuditEvent], viewer: Any) -> list[EventView]:
    maps = _link_maps(events)
    views = []
    for event in events:
        target, url = _target(event, maps, viewer)
        views.append(EventView(event, sentence(event, target), target, url, changes(event.before, event.after)))
    return views


