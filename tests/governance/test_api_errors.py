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
