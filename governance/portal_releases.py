"""The releases page: labels, their history, and moves (release, rollback, fallback pin, kill switch) in two steps.

A move's form first shows what will serve before and after (version, its system evaluation's test score, the
content diff) as the action plans it (`governance.actions.releases.plan_*`: the same checks, so a refusal shows
here, on the form, before anything is confirmed); the confirmation posts the same fields with `confirmed` and
calls the action, which checks again under its locks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from governance import forms as portal_forms
from governance.actions import releases as release_actions
from governance.actions import rights
from governance.actions import approvals as approval_actions
from governance.diffing import version_diff
from governance.errors import IllegalTransition, InvalidInput
from governance.models import (
    Evaluation,
    EvaluationStatus,
    Program,
    PromptVersion,
    Release,
    ReleaseAction,
    VersionStatus,
)
from governance.views import _program, field_of, portal_view

HISTORY_PAGE_SIZE = 25


# --- reading ------------------------------------------------------------------------------------------------


def system_test_scores(program: Program, versions: list[PromptVersion | None]) -> dict[str, Evaluation]:
    """The latest succeeded system evaluation on a test dataset of each version, by content hash (one query)."""
    hashes = {v.content_hash for v in versions if v is not None}
    found: dict[str, Evaluation] = {}
    for evaluation in (Evaluation.objects.filter(program=program, content_hash__in=hashes, metric=program.metric,
                                                 status=EvaluationStatus.SUCCEEDED, dataset__split="test")
                       .select_related("dataset").order_by("-finished_at", "-id")):
        found.setdefault(evaluation.content_hash, evaluation)
    return found


def _history(request: HttpRequest, program: Program) -> Any:
    """The program's label moves, newest first, searched by label, version number, person or reason."""
    moves: QuerySet[Release] = program.releases.select_related("version", "previous_version", "actor")
    query = request.GET.get("q", "").strip()
    if query:
        match = (Q(label__icontains=query) | Q(reason__icontains=query) | Q(actor__username__icontains=query)
                 | Q(actor__first_name__icontains=query) | Q(actor__last_name__icontains=query))
        number = query.lstrip("vV")
        if number.isdigit():
            match |= Q(version__number=int(number)) | Q(previous_version__number=int(number))
        moves = moves.filter(match)
    return Paginator(moves.order_by("-created_at", "-id"), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))


def _releases_context(request: HttpRequest, program: Program, **posted: Any) -> dict[str, Any]:
    labels = list(program.labels.select_related("version", "fallback_version").order_by("name"))
    label_names = [label.name for label in labels]
    approved = program.versions.filter(status=VersionStatus.APPROVED).select_related("run").order_by("-number")
    can_release = "move_labels" in rights.allowed_actions(program, request.user)
    blocked = []
    if can_release:
        for version in approval_actions.prefetch_approvals(approved):  # segregation of duties reads these approvals
            version.program = program
            why_not = rights.refusal(version, request.user, "release")
            if why_not is not None:
                blocked.append((version, why_not.message))
    kw = {"versions": approved, "labels": label_names}
    return {
        "program": program, "labels": labels, "history": _history(request, program), "q": request.GET.get("q", ""),
        "approved": approved, "can_release": can_release, "blocked": blocked,
        "release_form": posted.get("release_form") or portal_forms.ReleaseForm(**kw),
        "rollback_form": posted.get("rollback_form") or portal_forms.RollbackForm(**kw),
        "fallback_form": posted.get("fallback_form") or portal_forms.FallbackForm(**kw),
        "kill_form": posted.get("kill_form"),
    }


@portal_view
@require_GET
def releases(request: HttpRequest, slug: str) -> HttpResponse:
    program = _program(request, slug)
    return render(request, "governance/releases.html", _releases_context(request, program))


# --- moves in two steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveKind:
    """One kind of label move: its form, how to plan and apply it, and how the portal words it."""

    form_name: str
    form_class: type
    plan: Callable[[Program, Any, dict[str, Any]], release_actions.LabelMove]
    apply: Callable[[Program, Any, dict[str, Any]], Any]
    title: Callable[[release_actions.LabelMove], str]
    done: Callable[[release_actions.LabelMove], str]


def _confirm_context(move: release_actions.LabelMove, request: HttpRequest, kind: MoveKind) -> dict[str, Any]:
    before, after = move.serving_before, move.serving_after
    headings = ("Now", "After you confirm")
    if move.action == ReleaseAction.FALLBACK_PINNED:  # what engaging the kill switch would then change
        after, headings = move.version, ("Serves now", "Would serve while the kill switch is on")
    scores = system_test_scores(move.program, [before, after, move.version])
    return {
        "program": move.program, "move": move, "title": kind.title(move), "headings": headings,
        "before": before, "after": after, "before_eval": scores.get(before.content_hash) if before else None,
        "after_eval": scores.get(after.content_hash),
        "diff": version_diff(before.payload if before else None, after.payload) if before != after else None,
        "posted": [(k, v) for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "confirmed")],
        "action_url": request.path,
    }


def _move(request: HttpRequest, slug: str, kind: MoveKind) -> HttpResponse:
    """Step 1 (no `confirmed`): plan and show before/after. Step 2: apply. Refusals show on the form."""
    program = _program(request, slug)
    why_not = rights.refusal(program, request.user, "move_labels")
    if why_not is not None:
        raise why_not
    labels = list(program.labels.order_by("name").values_list("name", flat=True))
    approved = program.versions.filter(status=VersionStatus.APPROVED).order_by("-number")
    form = kind.form_class(request.POST, versions=approved, labels=labels)
    status = 400
    if form.is_valid():
        try:
            move = kind.plan(program, request.user, form.cleaned_data)
            if request.POST.get("confirmed") != "1":
                return render(request, "governance/release_confirm.html", _confirm_context(move, request, kind))
            kind.apply(program, request.user, form.cleaned_data)  # plans again under its locks
        except (InvalidInput, IllegalTransition) as exc:  # 400 on the field, 409 (the workflow refuses) on the form
            status = exc.http_status
            form.add_error(field_of(exc, form), exc.message)
        else:
            messages.success(request, kind.done(move))
            return redirect("releases", slug=program.slug)
    return render(request, "governance/releases.html",
                  _releases_context(request, program, **{kind.form_name: form}), status=status)


def _served(move: release_actions.LabelMove) -> str:
    return f"Label {move.label} now serves version {move.serving_after.number}."


RELEASE = MoveKind(
    "release_form", portal_forms.ReleaseForm,
    plan=lambda program, actor, d: release_actions.plan_release(d["version"], actor=actor, label=d["label"],
                                                                new_label=d["create_label"]),
    apply=lambda program, actor, d: release_actions.release_version(
        d["version"], actor=actor, label=d["label"], reason=d["reason"], new_label=d["create_label"]),
    title=lambda m: (f"Release version {m.version.number} as {'new label ' if m.creates_label else ''}{m.label}"),
    done=lambda m: f"Version {m.version.number} is now the {m.label} version. {_served(m)}")

ROLLBACK = MoveKind(
    "rollback_form", portal_forms.RollbackForm,
    plan=lambda program, actor, d: release_actions.plan_rollback(program, actor=actor, label=d["label"],
                                                                 to_version=d["to_version"]),
    apply=lambda program, actor, d: release_actions.rollback(program, actor=actor, label=d["label"],
                                                             to_version=d["to_version"], reason=d["reason"]),
    title=lambda m: f"Roll {m.label} back to version {m.version.number}",
    done=lambda m: f"Label {m.label} rolled back to version {m.version.number}. {_served(m)}")

FALLBACK = MoveKind(
    "fallback_form", portal_forms.FallbackForm,
    plan=lambda program, actor, d: release_actions.plan_fallback(program, actor=actor, label=d["label"],
                                                                 version=d["version"]),
    apply=lambda program, actor, d: release_actions.pin_fallback(program, actor=actor, label=d["label"],
                                                                 version=d["version"], reason=d["reason"]),
    title=lambda m: f"Pin version {m.version.number} as the kill-switch fallback of {m.label}",
    done=lambda m: f"Version {m.version.number} is the fallback of {m.label}: its kill switch serves it.")


def _kill_title(move: release_actions.LabelMove) -> str:
    if move.action == "kill_switch_on":
        return (f"Engage the kill switch of {move.label}: serve fallback version {move.serving_after.number} "
                f"instead of release version {move.serving_before.number}")
    return f"Release the kill switch of {move.label}: serve release version {move.serving_after.number} again"


class KillSwitchMoveForm(portal_forms.KillSwitchForm):
    """The kill switch form, taking (and ignoring) the version list the other move forms take."""

    def __init__(self, *args: Any, versions: Any = None, labels: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


KILL_SWITCH = MoveKind(
    "kill_form", KillSwitchMoveForm,
    plan=lambda program, actor, d: release_actions.plan_kill_switch(program, actor=actor, label=d["label"],
                                                                    on=d["on"]),
    apply=lambda program, actor, d: release_actions.set_kill_switch(program, actor=actor, label=d["label"],
                                                                    on=d["on"], reason=d["reason"]),
    title=_kill_title,
    done=lambda m: (f"Kill switch of {m.label} {'engaged' if m.action == 'kill_switch_on' else 'released'}. "
                    f"{_served(m)}"))


@portal_view
@require_POST
def release_create(request: HttpRequest, slug: str) -> HttpResponse:
    return _move(request, slug, RELEASE)


@portal_view
@require_POST
def release_rollback(request: HttpRequest, slug: str) -> HttpResponse:
    return _move(request, slug, ROLLBACK)


@portal_view
@require_POST
def release_fallback(request: HttpRequest, slug: str) -> HttpResponse:
    return _move(request, slug, FALLBACK)


@portal_view
@require_POST
def release_kill_switch(request: HttpRequest, slug: str) -> HttpResponse:
    return _move(request, slug, KILL_SWITCH)
