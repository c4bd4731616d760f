"""Schemathesis with every check against a live server on PostgreSQL: zero server errors (about a minute)."""

from __future__ import annotations

import os

import pytest

from tests.governance import fuzz, hostile
from tests.governance.export_helpers import fast_password_hashing  # noqa: F401  (autouse)

MAX_TIME = int(os.environ.get("GOVERNANCE_FUZZ_SECONDS", "60"))


@pytest.fixture
def world(transactional_db, live_server, settings):
    settings.GOVERNANCE_API_AUTH_MAX_FAILURES = 10**6  # the ignored_auth check sends bad keys on purpose
    return hostile.seed_world()


def test_schemathesis_all_checks_finds_no_server_error_on_postgresql(world, live_server, tmp_path):
    failures = fuzz.run_schemathesis(live_server.url, world.token, tmp_path, max_time=MAX_TIME)
    assert "not_a_server_error" not in failures, "\n".join(failures["not_a_server_error"][:10])
