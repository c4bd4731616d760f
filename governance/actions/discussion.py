"""Discussion of a change request: comments (threads, anchors, @mentions, review comments) and reviewer
assignments with due dates.

Comments and assignments are plain records beside the signed content: writing them never touches the version,
its payload or its content hash, and a review comment is no signature (it never counts towards approval). Each
write is still an audited action, and announces itself on commit (`comment_added`, `reviewer_assigned`) so the
job layer (governance.notify) tells the people concerned.

Who may do what:
- comment or reply: anyone who can see the program, while the change request is open or has changes requested;
- post a review comment: someone who may review this change (reviewer role, not its author, opener or run
  starter), the same people who could sign a decision;
- edit a comment: its author only, while its thread is unresolved;
- resolve or reopen a thread: its author, the change's proposers (opener, version author), or its reviewers;
- assign or unassign a reviewer: the proposers and anyone who may review the program; the assignee must be
  someone who may review this change.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from governance.actions._common import (
    Checks,
    allowed,
    create,
    expect_status,
    lock,
    require_text,
    send_on_commit,
    user_ref,
)
from governance.actions.reviews import check_reviewer, check_segregation
from governance.actions.versions import ACTIVE_CR_STATUSES
from governance.audit import record_event
from governance.errors import GovernanceError, IllegalTransition, InvalidInput, PermissionDenied
from governance.models import AnchorKind, ChangeRequest, Comment, Program, ReviewerAssignment
from governance.permissions import is_member, require_member
from governance.signals import comment_added, reviewer_assigned

MAX_BODY = 10_000
# "@name" not preceded by a word character (an email address is no mention); usernames may hold . @ + -
_MENTION = re.compile(r"(?<![\w@.+-])@([\w.@+-]+)")


# --- reading ------------------------------------------------------------------------------------------------


def comment_state(comment: Comment) -> dict[str, Any]:
    """A comment as the audit trail shows it."""
    return {"change_request": comment.change_request_id, "parent": comment.parent_id, "body": comment.body,
            "review": comment.review, "anchor": comment.anchor, "predictor": comment.predictor,
            "demo_index": comment.demo_index, "version": comment.version.number,
            "content_hash": comment.content_hash,
            "mentions": sorted(comment.mentions.values_list("username", flat=True)),
            "resolved": comment.resolved_at is not None}


def assignment_state(assignment: ReviewerAssignment) -> dict[str, Any]:
    return {"change_request": assignment.change_request_id, "reviewer": user_ref(assignment.reviewer),
            "due_date": assignment.due_date.isoformat() if assignment.due_date else None,
            "active": assignment.removed_at is None}


def threads(cr: ChangeRequest) -> list[Comment]:
    """The change request's threads in order, each first comment with `.thread_replies` (two queries)."""
    comments = list(cr.comments.select_related("author", "resolved_by", "version")
                    .prefetch_related("mentions").order_by("created_at", "id"))
    roots = [c for c in comments if c.parent_id is None]
    by_root: dict[int, list[Comment]] = {c.pk: [] for c in roots}
    by_pk = {c.pk: c for c in roots}
    for comment in comments:
        comment.change_request = cr  # the same instance: no query per comment, one answer per check
        if comment.parent_id is not None:
            comment.parent = by_pk[comment.parent_id]
            by_root[comment.parent_id].append(comment)
    for root in roots:
        root.thread_replies = by_root[root.pk]
    return roots


def active_assignments(cr: ChangeRequest) -> QuerySet[ReviewerAssignment]:
    return cr.assignments.filter(removed_at=None).select_related("reviewer", "assigned_by").order_by("created_at")


def program_people(program: Program) -> QuerySet[Any]:
    """Active users who are members of the program or own it (the people a notification may go to)."""
    return get_user_model().objects.filter(Q(programs=program) | Q(pk=program.owner_id), is_active=True) \
        .distinct().order_by("username")


def may_review(cr: ChangeRequest, user: Any) -> bool:
    """Whether `user` could sign a decision on this change (role, membership, not a proposer of it).

    Remembered on the change request instance: a page asks once per comment, and actions lock (re-read) the
    change request, so they always judge a fresh instance.
    """
    memo = cr.__dict__.setdefault("_may_review", {})
    if user.pk not in memo:
        memo[user.pk] = _refused(lambda: (check_reviewer(cr.program, user),
                                          check_segregation(cr, cr.version, user))) is None
    return memo[user.pk]


def eligible_reviewers(cr: ChangeRequest) -> list[Any]:
    """The people who may review this change: who can be assigned, and who is asked when nobody is."""
    return [user for user in program_people(cr.program) if may_review(cr, user)]


def mentioned_users(program: Program, body: str) -> list[Any]:
    """The users "@name" in `body` refers to; each must be able to see the program (else 400 on `body`)."""
    names = sorted({name.rstrip(".") for name in _MENTION.findall(body or "")} - {""})
    if not names:
        return []
    found = {user.get_username(): user for user in get_user_model().objects.filter(username__in=names,
                                                                                   is_active=True)}
    for name in names:
        if name not in found or not is_member(found[name], program):
            raise InvalidInput(f"@{name} is not a user who can see program {program.slug}; mention only its members",
                               field="body")
    return [found[name] for name in names]


# --- checks (raise; the portal asks the same functions) --------------------------------------------------------


def _refused(check: Any) -> GovernanceError | None:
    try:
        check()
    except GovernanceError as exc:
        return exc
    return None


def _is_proposer(cr: ChangeRequest, user: Any) -> bool:
    return user.pk in (cr.opened_by_id, cr.version.created_by_id)


def check_discussion_open(cr: ChangeRequest, *, doing: str) -> None:
    expect_status(cr.status, ACTIVE_CR_STATUSES, subject=f"change request {cr.pk}", doing=doing)


def check_comment(cr: ChangeRequest, user: Any) -> None:
    require_member(user, cr.program)
    check_discussion_open(cr, doing="be commented on")


def check_review_comment(cr: ChangeRequest, user: Any) -> None:
    """A review comment is a reviewer's: the same people who could sign a decision on this change."""
    check_comment(cr, user)
    check_reviewer(cr.program, user)
    check_segregation(cr, cr.version, user)


def check_assign(cr: ChangeRequest, user: Any) -> None:
    require_member(user, cr.program)
    if not _is_proposer(cr, user) and _refused(lambda: check_reviewer(cr.program, user)) is not None:
        raise PermissionDenied(f"user {user.get_username()!r} may not assign reviewers to change request {cr.pk}: "
                               "only its author, its opener and the program's reviewers may")
    check_discussion_open(cr, doing="have reviewers assigned")


def check_edit(comment: Comment, user: Any) -> None:
    if user.pk != comment.author_id:
        raise PermissionDenied(f"only the author of comment {comment.pk} may edit it")
    check_discussion_open(comment.change_request, doing="have comments edited")
    if _root(comment).resolved_at is not None:
        raise IllegalTransition(f"the thread of comment {comment.pk} is resolved; reopen it to edit")


def check_moderate(comment: Comment, user: Any) -> None:
    """Resolving and reopening belong to the thread's author, the change's proposers and its reviewers."""
    cr = comment.change_request
    require_member(user, cr.program)
    if comment.parent_id is not None:
        raise IllegalTransition(f"comment {comment.pk} is a reply; resolve or reopen its thread "
                                f"(comment {comment.parent_id})")
    if user.pk != comment.author_id and not _is_proposer(cr, user) and not may_review(cr, user):
        raise PermissionDenied(f"user {user.get_username()!r} may not resolve or reopen comment {comment.pk}: only "
                               "its author, the change's author or opener and its reviewers may")
    check_discussion_open(cr, doing="have threads resolved or reopened")


def check_resolve(comment: Comment, user: Any) -> None:
    check_moderate(comment, user)
    if comment.resolved_at is not None:
        raise IllegalTransition(f"comment {comment.pk} is resolved already")


def check_reopen(comment: Comment, user: Any) -> None:
    check_moderate(comment, user)
    if comment.resolved_at is None:
        raise IllegalTransition(f"comment {comment.pk} is not resolved")


def check_reply(comment: Comment, user: Any) -> None:
    check_comment(comment.change_request, user)
    if _root(comment).resolved_at is not None:
        raise IllegalTransition(f"the thread of comment {comment.pk} is resolved; reopen it to reply")


DISCUSSION_CHECKS: Checks = {"comment": check_comment, "review_comment": check_review_comment,
                             "assign": check_assign}
COMMENT_CHECKS: Checks = {"reply": check_reply, "edit": check_edit, "resolve": check_resolve,
                          "reopen": check_reopen}


def allowed_discussion_actions(cr: ChangeRequest, user: Any) -> set[str]:
    return allowed(DISCUSSION_CHECKS, cr, user)


def allowed_comment_actions(comment: Comment, user: Any) -> set[str]:
    return allowed(COMMENT_CHECKS, comment, user)


def _root(comment: Comment) -> Comment:
    return comment.parent if comment.parent_id is not None else comment


# --- input ----------------------------------------------------------------------------------------------------


def anchor_of(cr: ChangeRequest, anchor: str, predictor: str, demo_index: Any) -> tuple[str, str, int | None]:
    """(anchor, predictor, demo_index), checked against the candidate's content (400 naming the field)."""
    anchor, predictor = (anchor or "").strip(), (predictor or "").strip()
    if not anchor:
        if predictor or demo_index not in (None, ""):
            raise InvalidInput("anchor is required with predictor or demo_index (instruction or demo)", field="anchor")
        return "", "", None
    if anchor not in AnchorKind.values:
        raise InvalidInput(f"anchor must be one of {', '.join(AnchorKind.values)} (or empty)", field="anchor")
    predictors = {p.get("name"): p for p in cr.version.payload.get("program", {}).get("predictors", [])}
    if predictor not in predictors:
        raise InvalidInput(f"predictor {predictor!r} is not in version {cr.version.number}; it has "
                           f"{', '.join(sorted(map(str, predictors))) or 'none'}", field="predictor")
    if anchor == AnchorKind.INSTRUCTION:
        if demo_index not in (None, ""):
            raise InvalidInput("demo_index belongs to a demo anchor, not to an instruction", field="demo_index")
        return anchor, predictor, None
    return anchor, predictor, _demo_index(predictors[predictor], demo_index, version=cr.version.number)


def _demo_index(predictor: dict[str, Any], value: Any, *, version: int) -> int:
    demos = predictor.get("demos", [])
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise InvalidInput("demo_index is required for a demo anchor: the demo's position, from 0",
                           field="demo_index") from None
    if not 0 <= index < len(demos):
        raise InvalidInput(f"demo_index {index} is out of range: predictor {predictor.get('name')!r} of version "
                           f"{version} has {len(demos)} demo{'s' if len(demos) != 1 else ''}", field="demo_index")
    return index


def parse_due_date(value: Any) -> dt.date | None:
    """None, a date, or an ISO date string; never a day before today (UTC)."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise InvalidInput(f"due_date {str(value)[:40]!r} is not a date (YYYY-MM-DD)", field="due_date") from None
    if value < timezone.now().date():
        raise InvalidInput(f"due_date {value.isoformat()} is in the past", field="due_date")
    return value


# --- actions: comments ------------------------------------------------------------------------------------------


@transaction.atomic
def add_comment(cr: ChangeRequest, *, actor: Any, body: str, parent: Comment | None = None, anchor: str = "",
                predictor: str = "", demo_index: Any = None, review: bool = False) -> Comment:
    """Comment on a change request (or reply to a thread), optionally on one instruction or demo of the candidate.

    A reply belongs to its thread: its parent is the thread's first comment and it takes that comment's anchor.
    `review=True` posts a reviewer's overall comment without a decision. Mentioned users are told (on commit).
    """
    cr = lock(cr)
    body = require_text(body, field="body", max_length=MAX_BODY)
    if parent is not None:
        parent = _parent_in(cr, parent)
        check_reply(parent, actor)
        if anchor or predictor or demo_index not in (None, ""):
            raise InvalidInput("a reply takes its thread's anchor; send no anchor with parent", field="anchor")
        if review:
            raise InvalidInput("a review comment starts a thread; it cannot be a reply", field="review")
        anchor, predictor, demo_index = parent.anchor, parent.predictor, parent.demo_index
    else:
        (check_review_comment if review else check_comment)(cr, actor)
        anchor, predictor, demo_index = anchor_of(cr, anchor, predictor, demo_index)
    mentions = mentioned_users(cr.program, body)
    comment = create(Comment, by=actor, change_request=cr, parent=parent, author=actor, body=body, review=review,
                     anchor=anchor, predictor=predictor, demo_index=demo_index, version=cr.version,
                     content_hash=cr.version.content_hash)
    comment.mentions.set(mentions)
    record_event("review.commented" if review else "comment.added", actor=actor, obj=comment, program=cr.program,
                 after=comment_state(comment))
    send_on_commit(comment_added, Comment, instance=comment, actor=actor, mentioned=[u.pk for u in mentions])
    return comment


def _parent_in(cr: ChangeRequest, parent: Comment) -> Comment:
    parent = Comment.objects.select_related("parent", "change_request").get(pk=parent.pk)
    if parent.change_request_id != cr.pk:
        raise InvalidInput(f"comment {parent.pk} belongs to change request {parent.change_request_id}, not {cr.pk}",
                           field="parent")
    return _root(parent)


@transaction.atomic
def edit_comment(comment: Comment, *, actor: Any, body: str) -> Comment:
    """Change the text of one's own comment; people it newly mentions are told."""
    comment = _locked_comment(comment)
    check_edit(comment, actor)
    body = require_text(body, field="body", max_length=MAX_BODY)
    mentions = mentioned_users(comment.change_request.program, body)
    before = comment_state(comment)
    already = set(comment.mentions.values_list("pk", flat=True))
    comment.body, comment.edited_at = body, timezone.now()
    comment.save(update_fields=["body", "edited_at"])
    comment.mentions.set(mentions)
    record_event("comment.edited", actor=actor, obj=comment, program=comment.change_request.program, before=before,
                 after=comment_state(comment))
    newly = [u.pk for u in mentions if u.pk not in already]
    if newly:
        send_on_commit(comment_added, Comment, instance=comment, actor=actor, mentioned=newly, edited=True)
    return comment


@transaction.atomic
def resolve_comment(comment: Comment, *, actor: Any) -> Comment:
    """Mark a thread as settled (its first comment); replies and edits wait until it is reopened."""
    comment = _locked_comment(comment)
    check_resolve(comment, actor)
    return _set_resolved(comment, actor=actor, resolved=True)


@transaction.atomic
def reopen_comment(comment: Comment, *, actor: Any) -> Comment:
    comment = _locked_comment(comment)
    check_reopen(comment, actor)
    return _set_resolved(comment, actor=actor, resolved=False)


def _set_resolved(comment: Comment, *, actor: Any, resolved: bool) -> Comment:
    before = comment_state(comment)
    comment.resolved_at, comment.resolved_by = (timezone.now(), actor) if resolved else (None, None)
    comment.save(update_fields=["resolved_at", "resolved_by"])
    record_event("comment.resolved" if resolved else "comment.reopened", actor=actor, obj=comment,
                 program=comment.change_request.program, before=before, after=comment_state(comment))
    return comment


def _locked_comment(comment: Comment) -> Comment:
    """The comment re-read under its change request's lock (the lock every discussion write takes)."""
    lock(comment.change_request)
    return Comment.objects.select_related("change_request__program", "change_request__version", "parent",
                                          "version").get(pk=comment.pk)


# --- actions: assignments ---------------------------------------------------------------------------------------


@transaction.atomic
def assign_reviewer(cr: ChangeRequest, *, actor: Any, reviewer: Any, due_date: Any = None) -> ReviewerAssignment:
    """Ask `reviewer` to review this change by `due_date` (optional); assigning again changes the due date."""
    cr = lock(cr)
    check_assign(cr, actor)
    due = parse_due_date(due_date)
    refusal = _refused(lambda: (check_reviewer(cr.program, reviewer), check_segregation(cr, cr.version, reviewer)))
    if refusal is not None:
        raise InvalidInput(f"reviewer {reviewer.get_username()!r} may not review change request {cr.pk}: "
                           f"{refusal.message}", field="reviewer")
    current = cr.assignments.filter(reviewer=reviewer, removed_at=None).first()
    if current is not None:
        return _change_due_date(current, due, actor=actor)
    assignment = create(ReviewerAssignment, by=actor, change_request=cr, reviewer=reviewer, assigned_by=actor,
                        due_date=due)
    record_event("reviewer.assigned", actor=actor, obj=assignment, program=cr.program,
                 after=assignment_state(assignment))
    send_on_commit(reviewer_assigned, ReviewerAssignment, instance=assignment, actor=actor)
    return assignment


def _change_due_date(assignment: ReviewerAssignment, due: dt.date | None, *, actor: Any) -> ReviewerAssignment:
    if assignment.due_date == due:
        return assignment
    before = assignment_state(assignment)
    assignment.due_date = due
    assignment.save(update_fields=["due_date"])
    record_event("reviewer.due_date_changed", actor=actor, obj=assignment, program=assignment.change_request.program,
                 before=before, after=assignment_state(assignment))
    return assignment


@transaction.atomic
def unassign_reviewer(cr: ChangeRequest, *, actor: Any, reviewer: Any) -> ReviewerAssignment:
    """Take a reviewer off the change request (the assignment row stays, marked removed)."""
    cr = lock(cr)
    check_assign(cr, actor)
    assignment = cr.assignments.filter(reviewer=reviewer, removed_at=None).select_related("reviewer").first()
    if assignment is None:
        raise IllegalTransition(f"user {reviewer.get_username()!r} is not assigned to change request {cr.pk}")
    before = assignment_state(assignment)
    assignment.removed_at, assignment.removed_by = timezone.now(), actor
    assignment.save(update_fields=["removed_at", "removed_by"])
    record_event("reviewer.unassigned", actor=actor, obj=assignment, program=cr.program, before=before,
                 after=assignment_state(assignment))
    return assignment
