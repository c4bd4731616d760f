"""Tests in this folder need PostgreSQL; tests/test_postgresql.py runs them with DATABASE_URL set.

Collected only when the settings point at PostgreSQL, so a plain SQLite `pytest` run skips the folder
instead of failing on it, and the outer test makes sure it really ran.
"""

import os

import pytest


def pytest_ignore_collect(collection_path, config):
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return True
    return None


@pytest.fixture(scope="session", autouse=True)
def flush_past_truncate_triggers():
    """Let pytest-django empty the database after transactional tests, without weakening any trigger.

    The flush is one TRUNCATE, which migration 0003's TRUNCATE triggers refuse (as they must). Only the flush
    runs with `session_replication_role = replica`, under which PostgreSQL fires no ordinary trigger; SET LOCAL
    ends with the flush's own transaction, so every test still meets the triggers.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    flush = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        flush(self, ["SET LOCAL session_replication_role = replica", *sql_list])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield
