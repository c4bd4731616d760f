"""Hostile input against a live server (real HTTP) on SQLite: no 5xx, JSON error bodies, honest audit rows.

The corpus is tests/governance/hostile.py; tests/pg/test_pg_hostile_input.py replays it on PostgreSQL.
"""

from __future__ import annotations

import logging

import pytest

from governance.models import AuditEvent
from tests.governance import hostile
from tests.governance.export_helpers import fast_password_hashing  # noqa: F401  (autouse)


@pytest.fixture
def world(committed_db, live_server):
    return hostile.seed_world()


def test_corpus_gets_no_server_error_and_json_errors(world, live_server):
    sent, problems = hostile.replay(live_server.url, world)
    assert sent > 200
    assert not problems, "\n".join(problems)


def test_audit_rows_carry_a_valid_ip_and_a_bounded_request_id(world, live_server):
    hostile.replay(live_server.url, world)
    failed = AuditEvent.objects.filter(action="signature.failed").get()
    assert failed.ip_address == "127.0.0.1"  # the peer, not "not-an-ip"
    created = AuditEvent.objects.filter(action="version.created", actor=world.author).exclude(request_id="")
    assert created.count() == 4 and set(created.values_list("ip_address", flat=True)) == {"127.0.0.1"}
    assert all(0 < len(rid) <= 64 for rid in AuditEvent.objects.values_list("request_id", flat=True) if rid)


def test_request_id_is_kept_when_plain_and_replaced_when_not(world, live_server):
    plain = hostile.send(live_server.url, hostile.Case("plain", "GET", f"{hostile.V1}/programs/",
                                                       headers={"X-Request-ID": "abc-123.x:y"}), world.token)
    long = hostile.send(live_server.url, hostile.Case("long", "GET", f"{hostile.V1}/programs/",
                                                      headers={"X-Request-ID": "r" * 65}), world.token)
    assert plain.headers["x-request-id"] == "abc-123.x:y"
    assert len(long.headers["x-request-id"]) == 32 and long.headers["x-request-id"] != "r" * 65


def test_body_over_the_limit_is_413_json(world, live_server, settings):
    settings.GOVERNANCE_MAX_BODY_BYTES = 1000
    case = hostile.Case("big", "POST", f"{hostile.V1}/versions/", b'{"x": "' + b"a" * 2000 + b'"}')
    answer = hostile.send(live_server.url, case, world.token)
    assert answer.status == 413 and answer.content_type.startswith("application/json")
    assert hostile.json.loads(answer.body)["code"] == "too_large"


def test_unexpected_errors_are_json_and_logged_with_traceback_and_request_id(world, live_server, caplog,
                                                                            monkeypatch):
    """A bug (here: a filter set that raises) must give a JSON 500 with the request id, and a log record with
    the traceback and the same id."""
    from governance.api.filtersets import ProgramFilterSet

    def broken(self, queryset):
        raise RuntimeError("a bug in a filter")

    monkeypatch.setattr(ProgramFilterSet, "filter_queryset", broken)
    case = hostile.Case("bug", "GET", f"{hostile.V1}/programs/", headers={"X-Request-ID": "trace-me-1"})
    with caplog.at_level(logging.ERROR, logger="governance.api.errors"):
        answer = hostile.send(live_server.url, case, world.token)
    assert answer.status == 500 and answer.content_type.startswith("application/json")
    assert hostile.json.loads(answer.body) == {
        "code": "server_error", "request_id": "trace-me-1",
        "detail": "internal error; the server logged it with request id trace-me-1"}
    [record] = [r for r in caplog.records if "trace-me-1" in r.getMessage()]
    assert record.exc_info and "a bug in a filter" in str(record.exc_info[1])


def test_logging_has_a_django_request_handler_with_request_ids(settings):
    logger = settings.LOGGING["loggers"]["django.request"]
    assert logger["handlers"] and logger["level"] == "ERROR"
    assert "%(request_id)s" in settings.LOGGING["formatters"]["plain"]["format"]
