"""API errors: one body shape, the right status for every kind of error, never a 500 for client input."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import exceptions

from governance.api.errors import exception_handler
from governance.errors import FrozenVersionError, NotFound
from tests.governance.api_support import V1, error

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("exc", "status", "body"), [
    (exceptions.ValidationError({"title": ["too long"], "impact": ["bad"]}), 400,
     {"code": "invalid", "detail": "title: too long", "field": "title",
      "errors": {"title": ["too long"], "impact": ["bad"]}}),
    (exceptions.ValidationError(["whole body is wrong"]), 400,
     {"code": "invalid", "detail": "whole body is wrong", "errors": {"non_field_errors": ["whole body is wrong"]}}),
    (DjangoValidationError({"slug": ["Enter a valid slug."]}), 400,
     {"code": "invalid", "detail": "slug: Enter a valid slug.", "field": "slug",
      "errors": {"slug": ["Enter a valid slug."]}}),
    (IntegrityError("UNIQUE constraint failed"), 409,
     {"code": "conflict", "detail": "the request conflicts with data that already exists (a unique or integrity "
                                    "rule of the database refused it)"}),
    (FrozenVersionError("version 3 is approved and frozen"), 409,
     {"code": "frozen", "detail": "version 3 is approved and frozen"}),
    (NotFound("program support has no release label 'x'", field="label"), 404,
     {"code": "not_found", "detail": "program support has no release label 'x'", "field": "label",
      "errors": {"label": ["program support has no release label 'x'"]}}),
    (exceptions.MethodNotAllowed("PUT"), 405, {"code": "method_not_allowed", "detail": 'Method "PUT" not allowed.'}),
])
def test_exception_handler_maps_every_kind(exc, status, body):
    response = exception_handler(exc, {})
    assert (response.status_code, response.data) == (status, body)


def test_malformed_bodies_and_unknown_paths(api, program, author):
    client = api(author)
    broken = client.generic("POST", f"{V1}/versions/", "{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["code"] == "parse_error"
    assert client.generic("POST", f"{V1}/versions/", "x", content_type="text/plain").status_code == 415
    assert error(client.get(f"{V1}/no-such-thing/")) == {"status": 404, "code": "not_found",
                                                        "detail": "no API endpoint at /api/v1/no-such-thing/"}
    assert client.post(f"{V1}/nothing/here").json()["code"] == "not_found"  # JSON, and no CSRF page either
    assert client.get(f"{V1}/versions/99999999999999999999999/").status_code == 404
    assert client.get(f"{V1}/versions/?run=abc").json()["field"] == "run"
    nul = client.post(f"{V1}/versions/", {"program": "support", "payload": {"program": "\x00"}}, format="json")
    assert nul.status_code == 400 and nul.json()["field"] == "payload"


def test_error_messages_that_echo_a_lone_surrogate_still_render():
    response = exception_handler(exceptions.ValidationError({"events": ['"\ud800" is not a valid choice.']}), {})
    assert response.data["errors"] == {"events": ['"?" is not a valid choice.']}  # encodable text
    assert response.data["detail"].encode("utf-8") == b'events: "?" is not a valid choice.'


def test_json_bodies_are_bounded_and_unicode_safe(api, program, author):
    client = api(author)
    deep = client.generic("POST", f"{V1}/versions/", "[" * 2000 + "]" * 2000, content_type="application/json")
    assert error(deep) == {"status": 400, "code": "parse_error",
                           "detail": "JSON parse error - nested deeper than 32 levels"}
    surrogate = client.generic("POST", f"{V1}/versions/", '{"program": "\\ud800"}', content_type="application/json")
    assert error(surrogate)["field"] == "program" and "unpaired surrogate" in error(surrogate)["detail"]
    infinite = client.generic("POST", f"{V1}/versions/", '{"program": NaN}', content_type="application/json")
    assert error(infinite)["code"] == "parse_error"


def test_query_parameters_are_checked_before_the_database(api, program, author):
    client = api(author)
    assert error(client.get(f"{V1}/versions/?program=sup%00port")) == {
        "status": 400, "code": "invalid", "detail": "program: must not contain NUL characters", "field": "program",
        "errors": {"program": ["program: must not contain NUL characters"]}}
    assert error(client.get(f"{V1}/versions/?offset=99999999999999999999"))["field"] == "offset"
    assert client.get(f"{V1}/versions/?limit=99999999999999999999").status_code == 200  # capped at max_limit
    assert client.get(f"{V1}/audit-events/?created_at_after=2026-01-01T00:00:00%2B20:45").status_code == 200
    assert error(client.get(f"{V1}/audit-events/?created_at_after=9999-12-31T23:59:59-05:00"))["field"] == \
        "created_at"


def test_limit_and_offset_must_be_integers_in_range(api, program, author):
    client = api(author)
    for query, field in (("limit=abc", "limit"), ("limit=0", "limit"), ("limit=", "limit"), ("limit=1.5", "limit"),
                         ("offset=", "offset"), ("offset=-3", "offset"), ("offset=x", "offset")):
        assert error(client.get(f"{V1}/versions/?{query}"))["field"] == field, query
    assert client.get(f"{V1}/versions/?limit=5&offset=0").status_code == 200
