"""A server process refuses the public development SECRET_KEY outside the demo and the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_wsgi(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "GOVERNANCE_ALLOW_DEV_SECRET_KEY", "DEBUG")}
    return subprocess.run([sys.executable, "-c", "import governance.wsgi"], cwd=ROOT, capture_output=True,
                          text=True, env={**base, **env}, timeout=120)


def test_the_wsgi_app_refuses_the_development_secret_key():
    refused = start_wsgi()
    assert refused.returncode != 0
    assert "SECRET_KEY is not set: the public development key is refused outside the demo" in refused.stderr


def test_the_wsgi_app_starts_with_a_real_key_or_the_demo_opt_in():
    assert start_wsgi(SECRET_KEY="k" * 50).returncode == 0
    demo = start_wsgi(GOVERNANCE_ALLOW_DEV_SECRET_KEY="1")
    assert demo.returncode == 0 and "public development SECRET_KEY" in demo.stderr
