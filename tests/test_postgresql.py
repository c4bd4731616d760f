"""Runs tests/pg/ against the real PostgreSQL server on this machine, in a child pytest process.

The child gets DATABASE_URL pointing at PostgreSQL (pytest-django creates and drops its test database).
A missing server fails this test: the scale path must never be skipped silently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("GOVERNANCE_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/governance")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.services
def test_postgresql_suite_passes():
    assert _reachable("127.0.0.1", 5432), "PostgreSQL is not listening on 127.0.0.1:5432"
    env = {**os.environ, "DATABASE_URL": PG_URL}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/pg", "-q", "-p", "no:randomly", "--no-header"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, f"PostgreSQL suite failed:\n{tail}"
    assert " passed" in result.stdout and "no tests ran" not in result.stdout, tail
