"""Portal pages of the discussion: comments and assignments on the change request page, the notifications page
and its settings.

Thin views (governance/views.py's habits): each POST calls one action of governance.actions.discussion or
governance.actions.notifications; what a user may do comes from those modules' checks
(`allowed_discussion_actions`, `allowed_comment_actions`). Bad input re-renders the change request page with the
form's error (HTTP 400 naming the field); a refusal is the error page (403/409) through `portal_view`.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST, require_http_methods

from governance import views
from governance.actions import discussion as discussion_actions
from governance.actions import notifications as notification_actions
from governance.errors import InvalidInput, NotFound
from governance.models import AnchorKind, ChangeRequest, Comment, NotificationKind
from governance.permissions import remembered_memberships

NOTIFICATIONS_PAGE_SIZE = 25


# --- forms (shape only; the actions check everything else) ----------------------------------------------------


def anchor_choices(cr: ChangeRequest) -> list[tuple[str, str]]:
    """"" (the whole change), then each predictor's instruction and each of its demos in the candidate."""
    choices = [("", "The change as a whole")]
    for predictor in cr.version.payload.get("program", {}).get("predictors", []):
        name = predictor.get("name", "")
        choices.append((anchor_value(name, AnchorKind.INSTRUCTION), f"Instruction of {name}"))
        for index, _ in enumerate(predictor.get("demos", [])):
            choices.append((anchor_value(name, AnchorKind.DEMO, index), f"Demo {index + 1} of {name}"))
    return choices


def anchor_value(predictor: str, anchor: str, index: int | None = None) -> str:
    """The form's value for an anchor: "instruction:classify", "demo:classify:2"."""
    return f"{anchor}:{predictor}" if index is None else f"{anchor}:{predictor}:{index}"


def parse_anchor(value: str) -> dict[str, Any]:
    anchor, _, rest = (value or "").partition(":")
    if anchor == AnchorKind.DEMO:
        predictor, _, index = rest.rpartition(":")
        return {"anchor": anchor, "predictor": predictor, "demo_index": index}
    return {"anchor": anchor, "predictor": rest, "demo_index": None}


class CommentForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=discussion_actions.MAX_BODY,
                           label="Comment", help_text="Mention someone who can see this program with @username; "
                                                      "they are notified.")
    anchor = forms.ChoiceField(choices=[("", "The change as a whole")], required=False, label="About",
                               help_text="Pin the comment to an instruction or a demo of the candidate.")
    review = forms.BooleanField(required=False, label="Post as a review comment (no decision, not a signature)")

    def __init__(self, *args: Any, cr: ChangeRequest, may_review: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["anchor"].choices = anchor_choices(cr)
        if not may_review:  # not offered; a forced "review" still reaches the action, which refuses it (403)
            self.fields["review"].widget = forms.HiddenInput()


class ReplyForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=discussion_actions.MAX_BODY,
                           label="Reply")


class EditForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=discussion_actions.MAX_BODY,
                           label="Edit your comment")


class AssignForm(forms.Form):
    """The reviewer is typed (the program's people are offered as suggestions); the action refuses anyone who may
    not review this change, naming why. Judging every member here would cost queries per member on every view."""

    reviewer = forms.CharField(max_length=150, label="Reviewer (username)",
                               help_text="Someone with the reviewer role on this program who did not write the change.",
                               widget=forms.TextInput(attrs={"list": "program-people", "autocomplete": "off"}))
    due_date = forms.DateField(required=False, label="Due date", widget=forms.DateInput(attrs={"type": "date"}),
                               help_text="Optional (YYYY-MM-DD, UTC).")


class SettingsForm(forms.Form):
    """One checkbox per kind and channel, named "<kind>__in_app" and "<kind>__email"."""

    def __init__(self, *args: Any, current: dict[str, dict[str, bool]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for kind in NotificationKind:
            for channel, word in (("in_app", "in the portal"), ("email", "by email")):
                self.fields[f"{kind.value}__{channel}"] = forms.BooleanField(
                    required=False, initial=current[kind.value][channel], label=f"{kind.label} {word}")

    def changes(self) -> dict[str, dict[str, bool]]:
        changes: dict[str, dict[str, bool]] = {}
        for name, value in self.cleaned_data.items():
            kind, _, channel = name.partition("__")
            changes.setdefault(kind, {})[channel] = bool(value)
        return changes

    def rows(self) -> list[tuple[str, Any, Any]]:
        """(kind label, in-app field, email field) for the settings table."""
        return [(kind.label, self[f"{kind.value}__in_app"], self[f"{kind.value}__email"]) for kind in NotificationKind]


# --- the discussion section's context (read by templatetags.discussion) ------------------------------------------


def discussion_context(request: HttpRequest, cr: ChangeRequest, posted: dict[str, Any] | None = None) -> dict[str, Any]:
    """Threads with what the user may do to each, assignments, and the forms (bound ones after a refused POST)."""
    user = request.user
    threads = discussion_actions.threads(cr)
    with remembered_memberships():  # one membership answer for the whole section
        allowed = discussion_actions.allowed_discussion_actions(cr, user)
        for comment in [c for root in threads for c in (root, *root.thread_replies)]:
            comment.allowed = discussion_actions.allowed_comment_actions(comment, user)
    posted = posted or {}
    anchor = request.GET.get("anchor", "")
    forms_ = {
        "comment": posted.get("comment") or CommentForm(cr=cr, may_review="review_comment" in allowed,
                                                        initial={"anchor": anchor}),
        "assign": posted.get("assign") or (AssignForm() if "assign" in allowed else None),
    }
    people = list(discussion_actions.program_people(cr.program).values_list("username", flat=True)) \
        if forms_["assign"] is not None else []
    return {"threads": threads, "allowed": allowed, "forms": forms_, "people": people, "assignments":
            list(discussion_actions.active_assignments(cr)), "anchor_counts": anchor_counts(threads),
            "posted_thread": posted.get("thread"), "posted_reply": posted.get("reply"),
            "posted_edited": posted.get("edited"), "posted_edit": posted.get("edit"), "focus_anchor": anchor}


def anchor_counts(threads: list[Comment]) -> dict[str, int]:
    """Comments per anchor value (threads and their replies), for the links beside the diff."""
    counts: dict[str, int] = {}
    for root in threads:
        if root.anchor:
            key = anchor_value(root.predictor, root.anchor, root.demo_index)
            counts[key] = counts.get(key, 0) + 1 + len(root.thread_replies)
    return counts


def _rerender(request: HttpRequest, cr: ChangeRequest, posted: dict[str, Any], status: int) -> HttpResponse:
    """The change request page again, with the refused form and its error (and the user's text) in place."""
    request.discussion_posted = posted  # read by the discussion template tag
    context = views._change_request_context(request, cr)
    return render(request, "governance/change_request.html", context, status=status)


def _field_error(form: forms.Form, exc: InvalidInput) -> None:
    field = exc.field if exc.field in form.fields else None
    if exc.field in ("predictor", "demo_index"):
        field = "anchor"
    form.add_error(field, exc.message)


def _back(cr: ChangeRequest, fragment: str) -> HttpResponse:
    return redirect(reverse("change_request_detail", args=[cr.pk]) + fragment)


# --- change request: comments ------------------------------------------------------------------------------------


@views.portal_view
@require_POST
def comment_add(request: HttpRequest, pk: int) -> HttpResponse:
    cr = views._change_request(request, pk)
    may_review = "review_comment" in discussion_actions.allowed_discussion_actions(cr, request.user)
    form = CommentForm(request.POST, cr=cr, may_review=may_review)
    if form.is_valid():
        data = form.cleaned_data
        try:
            comment = discussion_actions.add_comment(cr, actor=request.user, body=data["body"],
                                                     review=data.get("review", False), **parse_anchor(data["anchor"]))
        except InvalidInput as exc:
            _field_error(form, exc)
        else:
            messages.success(request, "Your review comment is posted (no decision)." if comment.review
                             else "Your comment is posted.")
            return _back(cr, f"#comment-{comment.pk}")
    return _rerender(request, cr, {"comment": form}, 400)


def _comment(cr: ChangeRequest, comment_id: int) -> Comment:
    comment = cr.comments.select_related("change_request__program", "change_request__version", "parent",
                                         "version").filter(pk=comment_id).first()
    if comment is None:
        raise NotFound(f"no comment {comment_id} on change request {cr.pk}")
    return comment


@views.portal_view
@require_POST
def comment_reply(request: HttpRequest, pk: int, comment_id: int) -> HttpResponse:
    cr = views._change_request(request, pk)
    parent = _comment(cr, comment_id)
    form = ReplyForm(request.POST, prefix=f"reply-{parent.pk}")
    if form.is_valid():
        try:
            reply = discussion_actions.add_comment(cr, actor=request.user, body=form.cleaned_data["body"],
                                                   parent=parent)
        except InvalidInput as exc:
            _field_error(form, exc)
        else:
            messages.success(request, "Your reply is posted.")
            return _back(cr, f"#comment-{reply.pk}")
    return _rerender(request, cr, {"reply": form, "thread": parent.parent_id or parent.pk}, 400)


@views.portal_view
@require_POST
def comment_edit(request: HttpRequest, pk: int, comment_id: int) -> HttpResponse:
    cr = views._change_request(request, pk)
    comment = _comment(cr, comment_id)
    form = EditForm(request.POST, prefix=f"edit-{comment.pk}")
    if form.is_valid():
        try:
            discussion_actions.edit_comment(comment, actor=request.user, body=form.cleaned_data["body"])
        except InvalidInput as exc:
            _field_error(form, exc)
        else:
            messages.success(request, "Your comment is updated.")
            return _back(cr, f"#comment-{comment.pk}")
    return _rerender(request, cr, {"edit": form, "edited": comment.pk}, 400)


@views.portal_view
@require_POST
def comment_resolve(request: HttpRequest, pk: int, comment_id: int) -> HttpResponse:
    cr = views._change_request(request, pk)
    comment = _comment(cr, comment_id)
    if request.POST.get("resolved", "1") == "0":
        discussion_actions.reopen_comment(comment, actor=request.user)
        messages.success(request, "The thread is open again.")
    else:
        discussion_actions.resolve_comment(comment, actor=request.user)
        messages.success(request, "The thread is resolved.")
    return _back(cr, f"#comment-{comment.pk}")


# --- change request: assignments ---------------------------------------------------------------------------------


def _user(username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise InvalidInput(f"no user {username!r}", field="reviewer")
    return user


@views.portal_view
@require_POST
def assign(request: HttpRequest, pk: int) -> HttpResponse:
    cr = views._change_request(request, pk)
    form = AssignForm(request.POST)
    if form.is_valid():
        try:
            assignment = discussion_actions.assign_reviewer(cr, actor=request.user,
                                                            reviewer=_user(form.cleaned_data["reviewer"]),
                                                            due_date=form.cleaned_data["due_date"])
        except InvalidInput as exc:
            _field_error(form, exc)
        else:
            due = f", due {assignment.due_date.isoformat()}" if assignment.due_date else ""
            messages.success(request, f"{assignment.reviewer.get_username()} is assigned{due}.")
            return _back(cr, "#assignments")
    return _rerender(request, cr, {"assign": form}, 400)


@views.portal_view
@require_POST
def unassign(request: HttpRequest, pk: int, username: str) -> HttpResponse:
    cr = views._change_request(request, pk)
    reviewer = get_user_model().objects.filter(username=username).first()
    if reviewer is None:
        raise NotFound(f"no user {username!r}")
    discussion_actions.unassign_reviewer(cr, actor=request.user, reviewer=reviewer)
    messages.success(request, f"{username} is no longer assigned.")
    return _back(cr, "#assignments")


# --- notifications -------------------------------------------------------------------------------------------------


@views.portal_view
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    unread_only = request.GET.get("show") == "unread"
    rows = notification_actions.inbox(request.user)
    if unread_only:
        rows = rows.filter(read_at=None)
    page = Paginator(rows, NOTIFICATIONS_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "governance/notifications.html", {
        "page": page, "unread_only": unread_only, "unread": notification_actions.unread_count(request.user)})


@views.portal_view
@require_POST
def notifications_read(request: HttpRequest) -> HttpResponse:
    """Mark the posted notification ids read, or all of them when none is posted."""
    ids = request.POST.getlist("id")
    count = notification_actions.mark_read(request.user, ids or None)
    messages.success(request, f"{count} notification{'s' if count != 1 else ''} marked read.")
    return redirect(_safe_next(request) or reverse("notifications"))


@views.portal_view
@require_POST
def notification_open(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Mark one notification read and go to what it is about."""
    notification = notification_actions.own_notification(request.user, notification_id)
    notification_actions.mark_read(request.user, [notification.pk])
    target = notification.link if url_has_allowed_host_and_scheme(notification.link, allowed_hosts=None) else "/"
    return redirect(target)


@views.portal_view
@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    current = notification_actions.settings_of(request.user)
    if request.method == "POST":
        form = SettingsForm(request.POST, current=current)
        if form.is_valid():
            notification_actions.update_settings(request.user, actor=request.user, changes=form.changes())
            messages.success(request, "Your notification settings are saved.")
            return redirect("notification_settings")
    else:
        form = SettingsForm(current=current)
    return render(request, "governance/notification_settings.html",
                  {"form": form, "has_email": bool(request.user.email)})


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    return target if target.startswith("/") and url_has_allowed_host_and_scheme(target, allowed_hosts=None) else ""
