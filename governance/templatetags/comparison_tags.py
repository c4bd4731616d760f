"""Template helpers of the comparison table (templates/governance/_comparison.html)."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag
def query_with(request: Any, **changes: Any) -> str:
    """The request's query string with `changes` applied (a value of None drops the parameter): the filter and
    page links keep the versions, dataset and other filters the page was opened with."""
    query = request.GET.copy()
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = str(value)
    return "?" + query.urlencode()


@register.filter
def is_long(value: Any, length: int = 80) -> bool:
    """Text long enough to fold behind a summary."""
    return len(str(value)) > int(length)


@register.filter
def sig(value: Any, digits: int = 3) -> str:
    """A p-value to `digits` significant digits (0.0312, 1, 4.2e-05)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "\u2014"
    return f"{value:.{int(digits)}g}"
