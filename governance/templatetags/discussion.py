"""Template helpers of the discussion: its section's context on the change request page, the comment links beside
the diff, mentions in comment text, and the notification bell.

The section's context is computed once per request and change request (the page asks for it from the section
and from each link beside the diff).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from governance import portal_discussion
from governance.actions import notifications as notification_actions
from governance.models import AnchorKind, ChangeRequest, Comment
from optimizer import canonical_json

register = template.Library()


def _cached(context: template.Context, cr: ChangeRequest) -> dict[str, Any]:
    request = context["request"]
    cache = request.__dict__.setdefault("_discussion_context", {})
    if cr.pk not in cache:
        cache[cr.pk] = portal_discussion.discussion_context(request, cr, getattr(request, "discussion_posted", None))
    return cache[cr.pk]


@register.simple_tag(takes_context=True)
def discussion_for(context: template.Context, cr: ChangeRequest) -> dict[str, Any]:
    """`{% discussion_for cr as d %}`: threads, assignments, forms and what the user may do."""
    return _cached(context, cr)


@register.simple_tag(takes_context=True)
def comment_link(context: template.Context, cr: ChangeRequest, predictor: str, demo: Any = None) -> SafeString:
    """A link beside an instruction (no `demo`) or a demo of the candidate: "Comment" with the comments so far.

    `demo` is the demo itself (as the diff lists it); its position in the candidate is looked up by content.
    Nothing for demos the candidate no longer has (removed ones).
    """
    if demo is None:
        value, what = portal_discussion.anchor_value(predictor, AnchorKind.INSTRUCTION), f"the instruction of {predictor}"
    else:
        index = _demo_position(cr, predictor, demo)
        if index is None:
            return mark_safe("")
        value, what = portal_discussion.anchor_value(predictor, AnchorKind.DEMO, index), f"demo {index + 1} of {predictor}"
    count = _cached(context, cr)["anchor_counts"].get(value, 0)
    url = f"{reverse('change_request_detail', args=[cr.pk])}?anchor={value}#new-comment"
    label = f"{count} comment{'s' if count != 1 else ''}" if count else "Comment"
    return format_html('<a class="comment-link small" href="{}" data-anchor="{}">{}<span class="sr-only"> on {}</span></a>',
                       url, value, label, what)


def _demo_position(cr: ChangeRequest, predictor: str, demo: Any) -> int | None:
    wanted = canonical_json(demo)
    for entry in cr.version.payload.get("program", {}).get("predictors", []):
        if entry.get("name") == predictor:
            for index, candidate in enumerate(entry.get("demos", [])):
                if canonical_json(candidate) == wanted:
                    return index
    return None


@register.filter
def with_mentions(comment: Comment) -> SafeString:
    """The comment's text, escaped, with line breaks, and its mentions of users emphasised."""
    names = {user.get_username() for user in comment.mentions.all()}
    text = escape(comment.body)
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(f"@{escape(name)}", f'<strong class="mention">@{escape(name)}</strong>')
    return mark_safe(text.replace("\n", "<br>"))


@register.simple_tag(takes_context=True)
def unread_notifications(context: template.Context) -> int:
    """`{% unread_notifications as n %}`: the signed-in user's unread portal notifications (one query)."""
    request = context.get("request")
    if request is None:
        return 0
    if not hasattr(request, "_unread_notifications"):
        request._unread_notifications = notification_actions.unread_count(request.user)
    return request._unread_notifications
