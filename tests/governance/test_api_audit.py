"""API: the audit trail, read-only and filterable, as JSON and as CSV (governance.reports)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.models import AuditEvent
from tests.governance.api_support import V1, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


OPENED = ["program.created", "dataset.imported", "version.created", "change_request.opened", "version.submitted",
          "evaluation.requested", "evaluation.requested"]  # a change request asks the system for its evaluations


def test_members_read_their_programs_trail_auditors_everything(api, make_cr, users, outsider):
    make_cr(evaluated=False)
    member = [e["action"] for e in results(api(users["reviewer1"]).get(f"{V1}/audit-events/?program=support"))]
    assert member == OPENED
    everything = [e["action"] for e in results(api(users["auditor"]).get(f"{V1}/audit-events/?limit=500"))]
    assert "user.created" in everything and "roles.created" in everything  # events of no program: auditors only
    assert "user.created" not in [e["action"] for e in results(api(users["reviewer1"]).get(f"{V1}/audit-events/"))]
    assert results(api(outsider).get(f"{V1}/audit-events/")) == []
    event = AuditEvent.objects.filter(action="version.created").get()
    assert api(outsider).get(f"{V1}/audit-events/{event.pk}/").status_code == 404
    detail = api(users["auditor"]).get(f"{V1}/audit-events/{event.pk}/").json()
    assert (detail["actor"], detail["hash"], detail["prev_hash"]) == ("author", event.hash, event.prev_hash)


def test_read_only(api, program, users):
    event = AuditEvent.objects.first()
    client = api(users["admin"])
    assert client.post(f"{V1}/audit-events/", {}, format="json").status_code == 405
    assert client.delete(f"{V1}/audit-events/{event.pk}/").status_code == 405
    assert client.patch(f"{V1}/audit-events/{event.pk}/", {"reason": "x"}, format="json").status_code == 405


def test_filters(api, make_cr, users):
    make_cr(evaluated=False)
    client = api(users["auditor"])
    by_actor = {e["actor"] for e in results(client.get(f"{V1}/audit-events/?actor=author&limit=500"))}
    assert by_actor == {"author"}
    prefix = [e["action"] for e in results(client.get(f"{V1}/audit-events/?program=support&action=version.*"))]
    assert prefix == ["version.created", "version.submitted"]
    exact = results(client.get(f"{V1}/audit-events/?action=change_request.opened"))
    assert [e["object_type"] for e in exact] == ["ChangeRequest"]
    now = timezone.now()
    future = (now + timedelta(hours=1)).isoformat()
    past = (now - timedelta(hours=1)).isoformat()
    assert results(client.get(f"{V1}/audit-events/", {"created_at_after": future})) == []
    assert len(results(client.get(f"{V1}/audit-events/", {"created_at_after": past, "program": "support"}))) == 7
    bad = client.get(f"{V1}/audit-events/", {"created_at_before": "yesterday"})
    assert bad.status_code == 400 and bad.json()["field"] == "created_at"


def test_csv_export(api, make_cr, users):
    make_cr(evaluated=False)
    response = api(users["auditor"]).get(f"{V1}/audit-events/?program=support&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["id", "created_at", "actor_name", "action"]
    assert [row[3] for row in rows[1:]] == OPENED
    bad = api(users["auditor"]).get(f"{V1}/audit-events/?format=csv&created_at_after=never")
    assert bad.status_code == 400 and bad.json()["field"] == "created_at"  # errors are JSON, whatever was asked


def test_list_query_count_is_pinned(api, make_cr, users, django_assert_max_num_queries):
    for _ in range(5):
        make_cr(evaluated=False)
    client = api(users["reviewer1"])
    with django_assert_max_num_queries(3):
        # program + dataset, then per change request: version, opened, submitted and the candidate's evaluation
        # requested (production's, the program spec, is requested once and reused by the later four)
        assert len(results(client.get(f"{V1}/audit-events/?program=support&limit=100"))) == 2 + 5 * 4 + 1
