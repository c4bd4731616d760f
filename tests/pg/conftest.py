"""Tests in this folder need PostgreSQL; tests/test_postgresql.py runs them with DATABASE_URL set.

Collected only when the settings point at PostgreSQL, so a plain SQLite `pytest` run skips the folder
instead of failing on it, and the outer test makes sure it really ran.
"""

import os


def pytest_ignore_collect(collection_path, config):
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return True
    return None
