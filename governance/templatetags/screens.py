"""Template helpers every page shares: messages as sentences, and the page a refused form belongs to."""

from __future__ import annotations

from typing import Any

from django import template

from governance.portal_pages import page_url

register = template.Library()


@register.filter
def sentence(value: Any) -> str:
    """A domain message as a sentence: "user 'x' may not ..." -> "User 'x' may not ...". (capital, full stop)."""
    text = str(value or "").strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


@register.simple_tag
def form_page_url(request: Any) -> str:
    """On a page rendered for a POST (a refused form), the address of the form's own page; else empty."""
    if getattr(request, "method", "GET") != "POST":
        return ""
    return page_url(request.path)


@register.simple_tag
def page_link(request: Any, number: int, param: str = "page") -> str:
    """`?...&page=N` keeping the request's other query parameters (search and filters)."""
    query = request.GET.copy()
    query[param] = str(number)
    return "?" + query.urlencode()
