"""Portal plumbing every page shares: where a form's page is, and a friendly page for a GET on a POST-only URL.

Forms post to addresses of their own (`/change-requests/5/approve/`) that only accept POST. A refused form is
rendered at that address, so a browser would keep it in the address bar and a reload would ask for it with GET.
`page_url` names the page the form belongs to (the nearest address above it that answers GET); the base
template puts it in a <meta> that portal.js writes into the address bar. `MethodNotAllowedPageMiddleware` turns
the bare 405 a GET on such an address gets into a page saying what happened and linking to that page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve

HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def allowed_methods(view: Callable[..., Any]) -> set[str] | None:
    """The methods a view accepts, read from Django's require_http_methods decorators (None: any method).

    Walks the functools.wraps chain; a `require_http_methods` layer keeps its method list in its closure.
    Class-based views answer what their class implements.
    """
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)}
    allowed: set[str] | None = None
    layer: Any = view
    while layer is not None:
        for cell in getattr(layer, "__closure__", None) or ():
            contents = _cell(cell)
            if isinstance(contents, (list, tuple)) and contents and set(contents) <= HTTP_METHODS:
                allowed = set(contents) if allowed is None else allowed & set(contents)
        layer = getattr(layer, "__wrapped__", None)
    return allowed


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def accepts_get(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    methods = allowed_methods(match.func)
    return methods is None or "GET" in methods


def page_url(path: str) -> str:
    """`path` when it answers GET, else the nearest address above it that does (the form's page)."""
    candidate = path
    while candidate not in ("", "/"):
        if accepts_get(candidate):
            return candidate
        candidate = candidate.rstrip("/").rsplit("/", 1)[0] + "/"
    return "/"


class MethodNotAllowedPageMiddleware:
    """A browser's GET on a POST-only portal address gets a page, not Django's empty 405.

    The status stays 405 with its Allow header; the API (JSON answers of its own) is left alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (response.status_code != 405 or request.method not in ("GET", "HEAD") or request.path.startswith(("/api/", "/admin/"))
                or response.get("Content-Type", "").startswith("application/json")):
            return response
        friendly = render(request, "governance/method_not_allowed.html", {"page": page_url(request.path)},
                          status=405)
        friendly["Allow"] = response.get("Allow", "POST")
        return friendly


def search_page(request: HttpRequest, queryset: QuerySet[Any], fields: tuple[str, ...], *, per_page: int = 25,
                page_param: str = "page", query_param: str = "q") -> tuple[Page, str]:
    """One page of `queryset`, narrowed to the rows whose `fields` contain the request's search text."""
    query = request.GET.get(query_param, "").strip()[:200]
    if query:
        match = Q()
        for field in fields:
            match |= Q(**{f"{field}__icontains": query})
        queryset = queryset.filter(match)
    return Paginator(queryset, per_page).get_page(request.GET.get(page_param)), query
