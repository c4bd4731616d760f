"""The audit trail as people read it (the wording in governance.audit_text): a sentence per event, links to the
objects, only what changed (old struck out, new underlined; the raw record and its hashes one click away), a CSV
named after its filter, and the export signing key's page.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.cache import cache
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from governance import forms as portal_forms
from governance.api.filtersets import MAX_OFFSET, CappedCount, capped_count
from governance.audit import checkpoint_status
from governance.audit_text import present
from governance.errors import InvalidInput
from governance.models import AuditEvent, Program, Role
from governance.permissions import require_role
from governance.reports import audit_events, write_audit_csv
from governance.signing import public_key, public_key_fingerprint
from governance.views import _program, portal_view

AUDIT_PAGE_SIZE = 50

# --- the trail and its CSV --------------------------------------------------------------------------------------


def _filtered_events(form: portal_forms.AuditFilterForm, program: Program | None) -> QuerySet[AuditEvent]:
    data = form.cleaned_data if form.is_valid() else {}
    events = audit_events(program=program, since=data.get("since"), until=data.get("until"))
    if data.get("actor"):
        events = events.filter(Q(actor_name__icontains=data["actor"]) | Q(actor__username__iexact=data["actor"]))
    if data.get("action"):
        events = events.filter(_action_filter(data["action"].strip()))
    if data.get("text"):
        text = data["text"].strip()
        events = events.filter(Q(reason__icontains=text) | Q(action__icontains=text) | Q(object_id=text))
    return events


def action_names() -> list[str]:
    """The action names for the filter's suggestions. Reading them scans the action index (a million entries at
    scale); the answer is kept per latest event id, so it is read again only after new events."""
    latest = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return cache.get_or_set(f"governance:audit-action-names:{latest}", lambda: list(
        AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()), timeout=3600)


def _action_filter(action: str) -> Q:
    """A whole action name ("review.approved", as the list offers) matches exactly, which the action index
    answers at any history size; a family ("review." or "review") matches by prefix."""
    if "." in action and not action.endswith("."):
        return Q(action=action)
    return Q(action__startswith=action)


class TrailPage(Page):
    """A page that knows whether older events follow without knowing how many pages there are."""

    def __init__(self, object_list: Any, number: int, paginator: Paginator, *, more: bool) -> None:
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more

    def end_index(self) -> int:
        return self.start_index() + len(self.object_list) - 1


class TrailPaginator(Paginator):
    """Django's Paginator over an audit trail that counts at most the cap's matches (capped_count).

    Below the cap it is Django's. Past it the number of pages is unknown, so any page number up to MAX_OFFSET's
    is served: one event more than the page is read to know whether an older page follows."""

    def __init__(self, events: QuerySet[AuditEvent], per_page: int, *, known_count: int | None = None) -> None:
        super().__init__(events, per_page)
        self.known_count = known_count

    @cached_property
    def counted(self) -> CappedCount:
        if self.known_count is not None:
            return CappedCount(self.known_count, capped=False)
        return capped_count(self.object_list)

    @cached_property
    def count(self) -> int:
        return self.counted.value

    def validate_number(self, number: Any) -> int:
        if not self.counted.capped:
            return super().validate_number(number)
        try:
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if number < 1 or number > MAX_OFFSET // self.per_page:  # a larger offset overflows the database's integer
            raise EmptyPage("That page contains no results")
        return number

    def get_page(self, number: Any) -> Page:
        try:
            return super().get_page(number)
        except EmptyPage:  # a page past the last event of a capped trail: the last page under the cap instead
            return self.page(self.num_pages)

    def page(self, number: Any) -> Page:
        if not self.counted.capped:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom:bottom + self.per_page + 1])
        if not rows:
            raise EmptyPage("That page contains no results")
        return TrailPage(rows[:self.per_page], number, self, more=len(rows) > self.per_page)


def _audit(request: HttpRequest, program: Program | None) -> HttpResponse:
    form = portal_forms.AuditFilterForm(request.GET or None)
    events = _filtered_events(form, program).select_related("program")
    checkpoint = checkpoint_status()  # the latest signed checkpoint; the chain is never re-walked per page
    whole_trail = program is None and not any(form.data.get(name) for name in form.fields if name != "page")
    # The whole trail's size is the checkpoint's count plus the events after it, already read; any other
    # filter is counted up to the cap ("10,000+ events").
    paginator = TrailPaginator(events.order_by("-id"), AUDIT_PAGE_SIZE,
                               known_count=checkpoint.events_total if whole_trail else None)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "governance/audit.html", {
        "program": program, "form": form, "page": page, "events": present(list(page.object_list), request.user),
        "count_text": f"{paginator.count:,}{'+' if paginator.counted.capped else ''}",
        "count_exact": not paginator.counted.capped,
        "query": query.urlencode(), "csv_name": csv_filename(form, program, with_time=False),
        "checkpoint": checkpoint,
        "action_names": action_names(),
    })


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-")[:40] or "x"


def csv_filename(form: portal_forms.AuditFilterForm, program: Program | None, *, with_time: bool = True) -> str:
    """audit-<program or all>[-search-w][-actor-x][-action-y][-from-d][-to-d][-<UTC time>].csv: the name says what it
    holds."""
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    parts = ["audit", program.slug if program else "all"]
    for key, word in (("text", "search"), ("actor", "actor"), ("action", "action"), ("since", "from"),
                      ("until", "to")):
        if data.get(key):
            value = data[key].isoformat() if hasattr(data[key], "isoformat") else data[key]
            parts += [word, _slug(value)]
    if with_time:
        parts.append(f"{timezone.now():%Y%m%dT%H%M%SZ}")
    return "-".join(parts) + ".csv"


def _audit_csv(request: HttpRequest, program: Program | None) -> HttpResponse:
    form = portal_forms.AuditFilterForm(request.GET or None)
    if request.GET and not form.is_valid():
        raise InvalidInput("; ".join(" ".join(v) for v in form.errors.values()))
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{csv_filename(form, program)}"'
    write_audit_csv(_filtered_events(form, program), response)
    return response


def _require_auditor(request: HttpRequest) -> None:
    require_role(request.user, Role.AUDITOR, doing="read the global audit trail (program members read their "
                                                   "program's trail from the program page)")


@portal_view
@require_GET
def audit_global(request: HttpRequest) -> HttpResponse:
    _require_auditor(request)
    return _audit(request, None)


@portal_view
@require_GET
def audit_global_csv(request: HttpRequest) -> HttpResponse:
    _require_auditor(request)
    return _audit_csv(request, None)


@portal_view
@require_GET
def audit_program(request: HttpRequest, slug: str) -> HttpResponse:
    return _audit(request, _program(request, slug))


@portal_view
@require_GET
def audit_program_csv(request: HttpRequest, slug: str) -> HttpResponse:
    return _audit_csv(request, _program(request, slug))


# --- the export signing key -------------------------------------------------------------------------------------


@portal_view
@require_GET
def signing_key_page(request: HttpRequest) -> HttpResponse:
    """The public half of the export signing key, its fingerprint, and how to check a bundle against it."""
    try:
        key, fingerprint, problem = public_key(), public_key_fingerprint(), ""
    except ImproperlyConfigured:  # the message names a server path: the page says only what to do
        key, fingerprint, problem = "", "", ("No export signing key is configured, so nothing can be exported or "
                                             "checked yet. An administrator creates one with "
                                             "`python manage.py generate_signing_key`.")
    return render(request, "governance/signing_key.html", {"public_key": key, "fingerprint": fingerprint,
                                                           "problem": problem}, status=503 if problem else 200)
