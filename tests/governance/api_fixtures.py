"""Fixtures of the API tests, loaded with `pytest_plugins = ["tests.governance.api_fixtures"]`.

Data is set up through the real actions (the conftest fixtures), never by saving models.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.governance.export_helpers import signing_key_settings


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
