"""Helpers shared by the action modules: reasons, locks, status moves, history users, signals on commit."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db import models, transaction
from django.dispatch import Signal

from governance.audit import record_event
from governance.errors import GovernanceError, IllegalTransition, InvalidInput
from governance.models.workflow import workflow_of
from governance.permissions import remembered_memberships

M = TypeVar("M", bound=models.Model)
Check = Callable[[Any, Any], object]  # (object, user): raises a GovernanceError when the user may not act
Checks = dict[str, Check]  # action name -> the check the action itself makes

# The label whose version a change request is judged against (its "base") and that services fetch by default.
PRODUCTION_LABEL = "production"


def require_reason(reason: str | None, *, doing: str) -> str:
    """A non-blank reason, stripped; compliance wants a "why" on every move that needs one."""
    text = (reason or "").strip()
    if not text:
        raise InvalidInput(f"a reason is required to {doing}", field="reason")
    return text


def require_text(value: str | None, *, field: str, max_length: int | None = None) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{field} is required", field=field)
    if max_length is not None and len(text) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field=field)
    return text


def lock(instance: M) -> M:
    """Re-read `instance` with a row lock held to the end of the transaction.

    The fresh copy matters as much as the lock: another transaction may have changed the row since the caller
    loaded it, and every state check must judge the committed state, not a stale one.

    FOR NO KEY UPDATE, never FOR UPDATE (every row lock of the actions): we never change a key, and FOR UPDATE
    would block the FOR KEY SHARE that PostgreSQL takes on a row when another transaction inserts a row pointing
    at it. An action holding the audit chain's lock inserts such rows (the audit event names its program), so a
    FOR UPDATE on a program waiting for the chain deadlocked with it (found by bench/write_throughput.py).
    """
    return type(instance)._default_manager.select_for_update(no_key=True).get(pk=instance.pk)


def expect_status(current: str, allowed: Iterable[str], *, subject: str, doing: str,
                  error: type[IllegalTransition] = IllegalTransition) -> None:
    """Raise `error` unless `current` is one of `allowed`: "version 7 is rejected; only in_review versions can ..."."""
    allowed = tuple(str(a) for a in allowed)
    if str(current) not in allowed:
        raise error(f"{subject} is {current}; only {' or '.join(allowed)} {_plural(subject)} can {doing}")


def expect_transition(obj: models.Model, to: str, *, doing: str,
                      error: type[IllegalTransition] = IllegalTransition) -> None:
    """Raise `error` unless the object's workflow table has an edge from its status to `to`; the message names
    the states that do ("version 7 is rejected; only in_review versions can be approved")."""
    workflow = workflow_of(obj)
    expect_status(obj.status, workflow.sources(to), subject=workflow.subject(obj), doing=doing, error=error)


def transition(obj: M, to: str, *, actor: Any, action: str, state: Callable[[M], dict[str, Any]], reason: str = "",
               doing: str | None = None, after: dict[str, Any] | None = None, **fields: Any) -> M:
    """Move `obj` along one edge of its workflow (governance.models.workflow): check the edge, set the status
    and `fields`, save through the model, and write the audit event `action` with `state` before and after
    (plus `after`), all in the caller's transaction. `doing` words the refusal ("be withdrawn")."""
    expect_transition(obj, to, doing=doing or f"become {to}")
    before = state(obj)
    obj.status = to
    for name, value in fields.items():
        setattr(obj, name, value)
    save(obj, actor=actor, fields=["status", *fields])
    record_event(action, actor=actor, obj=obj, program=obj.program, before=before,
                 after={**state(obj), **(after or {})}, reason=reason)
    return obj


def refusal_of(checks: Checks, obj: Any, user: Any, action: str) -> GovernanceError | None:
    """The error the action's own check raises for `user` on `obj` now, or None when the action is allowed."""
    try:
        checks[action](obj, user)
    except GovernanceError as exc:
        return exc
    return None


def allowed(checks: Checks, obj: Any, user: Any) -> set[str]:
    """The actions among `checks` that `user` may take on `obj` now (an anonymous user: none)."""
    if not getattr(user, "is_authenticated", False):
        return set()
    with remembered_memberships():
        return {name for name in checks if refusal_of(checks, obj, user, name) is None}


def _plural(subject: str) -> str:
    """"change request 5" -> "change requests"."""
    head, _, last = subject.rpartition(" ")
    return (head if last.isdigit() and head else subject) + "s"


def save(instance: models.Model, *, actor: Any, fields: Iterable[str] | None = None) -> None:
    """Save through the model (so its guards run) with the actor as the django-simple-history user."""
    instance._history_user = actor if getattr(actor, "pk", None) else None  # read by simple_history
    instance.save(update_fields=list(fields) if fields is not None else None)


def create(model: type[M], *, by: Any, **values: Any) -> M:
    """Insert a row with `by` as the django-simple-history user."""
    instance = model(**values)
    instance._history_user = by if getattr(by, "pk", None) else None
    instance.save(force_insert=True)
    return instance


def send_on_commit(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Send a domain signal once the transaction commits, so receivers never see a rolled-back change."""
    transaction.on_commit(lambda: signal.send(sender=sender, **kwargs))


def user_ref(user: Any) -> dict[str, Any] | None:
    """A user as audit JSON: id plus username, readable without a join and stable if the user is renamed."""
    if user is None:
        return None
    return {"id": user.pk, "username": user.get_username()}
