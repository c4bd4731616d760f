"""The audit trail's lists count at most a cap of matching events (issue 15): exact below it, "N+" and a flag
above it, and pages past the cap still serve the right events, on the portal page and in the API."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import call_command

from governance import portal_audit
from governance.api import filtersets
from governance.api.filtersets import capped_count
from governance.models import AuditEvent
from tests.governance.api_support import V1, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

CAP = 4
VERSIONS = 9  # version.created events: more than the cap, over several pages of two


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(filtersets, "AUDIT_COUNT_CAP", CAP)
    monkeypatch.setattr(portal_audit, "AUDIT_PAGE_SIZE", 2)


@pytest.fixture
def created(make_version) -> list[int]:
    """The ids of VERSIONS version.created events, newest first (the portal's order)."""
    for _ in range(VERSIONS):
        make_version()
    ids = list(AuditEvent.objects.filter(action="version.created").order_by("-id").values_list("id", flat=True))
    assert len(ids) == VERSIONS
    return ids


def _portal(client, auditor, pw, **query):
    assert client.login(username=auditor.username, password=pw(auditor))
    page = client.get("/audit/", query)
    assert page.status_code == 200
    return page.content.decode()


def _event_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<span class="mono small">event (\d+)</span>', html)]


def _count_text(html: str) -> str:
    return re.search(r'<span class="muted small" id="event-count">([^<]*)</span>', html).group(1)


# --- the helper ---------------------------------------------------------------------------------------------------


def test_capped_count_is_exact_up_to_the_cap_and_flags_more(small_cap, created):
    events = AuditEvent.objects.filter(action="version.created")
    assert capped_count(events, cap=VERSIONS) == filtersets.CappedCount(VERSIONS, capped=False)
    assert capped_count(events, cap=VERSIONS - 1) == filtersets.CappedCount(VERSIONS - 1, capped=True)
    assert capped_count(events) == filtersets.CappedCount(CAP, capped=True)  # the module's cap, read per call
    assert capped_count(events.none()) == filtersets.CappedCount(0, capped=False)


def test_the_count_reads_at_most_cap_plus_one_rows(small_cap, created, django_assert_num_queries):
    with django_assert_num_queries(1) as captured:
        capped_count(AuditEvent.objects.filter(action="version.created").select_related("program").order_by("-id"))
    sql = captured.captured_queries[0]["sql"].upper()
    assert f"LIMIT {CAP + 1}" in sql and "ORDER BY" not in sql and "JOIN" not in sql, sql


# --- the portal page ----------------------------------------------------------------------------------------------


def test_portal_counts_exactly_below_the_cap(small_cap, monkeypatch, client, auditor, pw, created):
    html = _portal(client, auditor, pw, action="program.created")
    assert _count_text(html) == "1 event, newest first"
    assert "pagination" not in html  # one page: no page links
    monkeypatch.setattr(filtersets, "AUDIT_COUNT_CAP", VERSIONS)  # exactly at the cap: still exact
    html = _portal(client, auditor, pw, action="version.created")
    assert _count_text(html) == f"{VERSIONS} events, newest first"
    assert "Page 1 of 5" in html and 'rel="last"' in html and "page=5" in html


def test_portal_shows_the_cap_with_a_plus_and_no_last_page(small_cap, client, auditor, pw, created):
    html = _portal(client, auditor, pw, action="version.created")
    assert _count_text(html) == f"{CAP}+ events, newest first"
    assert _event_ids(html) == created[:2]
    assert "Page 1<" in html and " of " not in re.search(r"Page 1[^<]*<", html).group(0)
    assert 'rel="next"' in html and 'rel="last"' not in html


def test_portal_pages_past_the_cap_serve_the_right_events(small_cap, client, auditor, pw, created):
    for number in (3, 4):  # the cap covers pages 1-2; these lie past it
        html = _portal(client, auditor, pw, action="version.created", page=number)
        assert _event_ids(html) == created[2 * (number - 1):2 * number]
        assert 'rel="prev"' in html and 'rel="next"' in html and 'rel="last"' not in html
        assert f"action=version.created&amp;page={number + 1}" in html  # the filter is kept in the link
    last = _portal(client, auditor, pw, action="version.created", page=5)
    assert _event_ids(last) == created[8:]
    assert 'rel="prev"' in last and 'rel="next"' not in last


def test_portal_page_numbers_past_the_end_or_invalid_fall_back(small_cap, client, auditor, pw, created):
    beyond = _portal(client, auditor, pw, action="version.created", page=6)
    assert _event_ids(beyond) == created[2:4]  # the last page under the cap, as Django's paginator does
    assert _event_ids(_portal(client, auditor, pw, action="version.created", page="x")) == created[:2]
    assert _event_ids(_portal(client, auditor, pw, action="version.created", page=10**40)) == created[2:4]


def test_whole_trail_keeps_the_checkpoints_exact_count(small_cap, client, auditor, pw, created):
    html = _portal(client, auditor, pw)
    total = AuditEvent.objects.count()
    assert total > CAP
    assert _count_text(html) == f"{total:,} events, newest first"
    assert 'rel="last"' in html


# --- the API ------------------------------------------------------------------------------------------------------


def _list(api, auditor, **query):
    response = api(auditor).get(f"{V1}/audit-events/", {"action": "version.created", "ordering": "-id", **query})
    assert response.status_code == 200, response.content
    return response.json()


def test_api_count_is_exact_below_the_cap(small_cap, api, auditor, created):
    body = _list(api, auditor, action="program.created")
    assert (body["count"], body["count_capped"], body["next"]) == (1, False, None)
    assert list(body) == ["count", "count_capped", "next", "previous", "results"]


def test_api_count_is_the_cap_and_flagged_above_it(small_cap, api, auditor, created):
    body = _list(api, auditor, limit=2)
    assert (body["count"], body["count_capped"]) == (CAP, True)
    assert [e["id"] for e in body["results"]] == created[:2]
    assert "offset=2" in body["next"] and body["previous"] is None


def test_api_pages_past_the_cap_serve_the_right_events(small_cap, api, auditor, created):
    seen, body = [], _list(api, auditor, limit=2)
    while True:
        seen += [e["id"] for e in body["results"]]
        if body["next"] is None:
            break
        assert body["count_capped"] is True
        body = api(auditor).get(body["next"]).json()
    assert seen == created  # followed `next` past the cap to the oldest event, none skipped or repeated
    past = _list(api, auditor, limit=2, offset=6)
    assert [e["id"] for e in past["results"]] == created[6:8] and "offset=4" in past["previous"]
    assert _list(api, auditor, limit=2, offset=100)["results"] == []


def test_api_browsable_page_past_the_cap_renders(small_cap, api, auditor, created):
    response = api(auditor).get(f"{V1}/audit-events/", {"action": "version.created", "offset": 6, "limit": 2},
                                HTTP_ACCEPT="text/html")
    assert response.status_code == 200


def test_api_schema_documents_count_capped():
    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    schemas = json.loads(out.getvalue())["components"]["schemas"]
    audit_page = schemas["PaginatedAuditEventList"]
    assert audit_page["properties"]["count_capped"]["type"] == "boolean"
    assert "count_capped" in audit_page["required"]
    assert "count_capped" not in schemas["PaginatedProgramList"]["properties"]  # other lists keep their shape


def test_other_lists_keep_the_exact_count(small_cap, api, users, created):
    response = api(users["admin"]).get(f"{V1}/versions/", {"limit": 2})
    body = response.json()
    assert body["count"] == VERSIONS and "count_capped" not in body  # above the cap, yet counted exactly
    assert len(results(response)) == 2
