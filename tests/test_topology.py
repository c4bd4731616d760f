"""Smoke test of the production topology: scripts/topology.sh starts gunicorn, a Celery worker and beat against
the machine's real PostgreSQL and Redis with production settings; the test seeds it through the real actions
(the change request's evaluation runs in the topology's worker, through the broker) and then, over HTTP through
gunicorn only: logs in, opens the change request page, fetches the released bundle with an API key and verifies
its signature offline, loads a hashed static file, and reads /readyz, /metrics and the JSON logs.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from optimizer.bundle import load_private_key, public_key_b64, verify_bundle
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import SimulatedClassifier

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.services, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def topology(tmp_path) -> Iterator[dict[str, str]]:
    database = f"governance_topology_{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GOVERNANCE_", "DJANGO_"))}
    env.update(TOPOLOGY_DIR=str(tmp_path / "topology"), WEB_PORT=str(_free_port()),
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
               CELERY_BROKER_URL="redis://127.0.0.1:6379/13", PYTHON=sys.executable, SECRET_KEY=uuid.uuid4().hex * 2,
               GOVERNANCE_LM_API_KEY="x")
    script = [str(ROOT / "scripts" / "topology.sh")]
    started = subprocess.run([*script, "start"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        subprocess.run([*script, "stop"], cwd=ROOT, env=env, capture_output=True, timeout=120)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_topology_serves_the_governed_flow(topology):
    with FakeLMServer(SimulatedClassifier(min_demos=14)) as lm:
        seeded = subprocess.run([str(ROOT / "scripts" / "topology.sh"), "run", sys.executable, "-m",
                                 "tests.topology_seed", lm.url], cwd=ROOT, env=topology,
                                capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    seed = json.loads(seeded.stdout.strip().splitlines()[-1])
    base = f"http://127.0.0.1:{topology['WEB_PORT']}"
    with httpx.Client(base_url=base, timeout=30) as web:
        _log_in(web, "reviewer1", seed["password"])
        page = web.get(f"/change-requests/{seed['change_request']}/")
        assert page.status_code == 200 and "Baseline" in page.text
        _check_static(web, page.text)
        ready = web.get("/readyz").json()
        assert ready["status"] == "ready" and ready["checks"]["broker"]["detail"] == "redis", ready
        metrics = web.get("/metrics").text
        assert re.search(r'^governance_lm_calls_total\{kind="evaluation"\} [1-9]', metrics, re.M), metrics[-2000:]
    with httpx.Client(base_url=base, timeout=30) as service:
        bundle = service.get(f"/api/v1/programs/{seed['program']}/releases/production/bundle",
                             headers={"Authorization": f"Token {seed['api_key']}"})
    assert bundle.status_code == 200, bundle.text
    key = load_private_key(Path(topology["TOPOLOGY_DIR"], "signing_key.pem").read_bytes())
    verified = verify_bundle(bundle.json(), trusted_public_key=public_key_b64(key))
    assert verified.content_hash == seed["content_hash"]
    _check_json_logs(Path(topology["TOPOLOGY_DIR"], "log", "web.log"))


def _log_in(web: httpx.Client, username: str, password: str) -> None:
    form = web.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    done = web.post("/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token},
                    headers={"Referer": f"{web.base_url}/login/"})
    assert done.status_code == 302, done.text[:2000]
    assert web.get("/").status_code == 200


def _check_static(web: httpx.Client, html: str) -> None:
    """Static files carry content hashes and are cached for good (WhiteNoise with the manifest storage)."""
    stylesheet = re.search(r'href="(/static/[^"]+\.[0-9a-f]{12}\.css)"', html)
    assert stylesheet, "the page links no hashed stylesheet"
    response = web.get(stylesheet.group(1))
    assert response.status_code == 200 and "immutable" in response.headers["cache-control"]


def _check_json_logs(path: Path) -> None:
    """The application's log lines are JSON with the request id, one access line per request among them."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    assert all({"time", "level", "logger", "message", "request_id"} <= set(record) for record in records)
    access = [r for r in records if r["logger"] == "governance.access"]
    assert any(r["path"].startswith("/change-requests/") and r["status"] == 200 for r in access), access[-5:]
    assert all(len(r["request_id"]) >= 16 for r in access)
