"""Helpers of the API tests (tests/governance/test_api_*.py); their fixtures are in api_fixtures.py."""

from __future__ import annotations

from typing import Any

V1 = "/api/v1"


def error(response: Any) -> dict[str, Any]:
    """The error body, with the status, for exact assertions."""
    return {"status": response.status_code, **response.json()}


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    body = response.json()
    return body["results"] if isinstance(body, dict) and "results" in body else body
