"""Shared helpers of the API tests (tests/governance/test_api_*.py): clients, signing key, query budgets.

Import the fixtures into a test module (`from tests.governance.api_support import api, signing  # noqa: F401`).
Data is set up through the real actions (the conftest fixtures), never by saving models.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.governance.export_helpers import signing_key_settings

V1 = "/api/v1"


@pytest.fixture
def api():
    """`api(user)`: an APIClient authenticated as `user` (None: anonymous); `api(user, token=True)` uses a real
    API token in the Authorization header instead of forcing the user."""
    def client(user: Any = None, *, token: bool = False) -> APIClient:
        c = APIClient()
        if user is not None and token:
            key = Token.objects.get_or_create(user=user)[0].key
            c.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        elif user is not None:
            c.force_authenticate(user)
        return c
    return client


@pytest.fixture
def signing(tmp_path, settings):
    """A fresh export signing key for the test; the bundle cache starts empty."""
    from django.core.cache import cache

    from governance.api.bundles import forget

    cache.clear()
    forget()
    with signing_key_settings(tmp_path):
        yield
    cache.clear()
    forget()


def error(response: Any) -> dict[str, Any]:
    """The error body, with the status, for exact assertions."""
    return {"status": response.status_code, **response.json()}


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    body = response.json()
    return body["results"] if isinstance(body, dict) and "results" in body else body
