"""SQLite as the embedded default under real concurrency: 48 simultaneous audited writes through gunicorn.

Each write creates a version (a new number per program, a hash-chained audit event): every transaction reads,
then writes. With SQLite's default deferred transactions two such requests deadlock on the lock upgrade and one
fails at once with "database is locked" (the busy timeout does not apply to an upgrade); the settings make
transactions IMMEDIATE (the write lock is taken first, the others wait) and the file WAL.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 48
SEED = """
import json
from rest_framework.authtoken.models import Token
from governance.actions import create_program, create_user_with_roles, initial_payload
from tests.governance.export_helpers import SPEC
author = create_user_with_roles(actor=None, username="author", password="Correct-Horse-Battery-9",
                                roles=["author"], first_name="Alice", last_name="Author")
program = create_program(actor=author, slug="support", name="Support", spec=SPEC)
print(json.dumps({"token": Token.objects.create(user=author).key, "payload": initial_payload(program)}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture
def gunicorn(tmp_path):
    """A migrated SQLite file, one author with a token, and gunicorn (3 workers x 4 threads) serving it."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'governance.sqlite3'}",
           "GOVERNANCE_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "governance.settings", "DEBUG": "0",
           "CELERY_BROKER_URL": "", "PYTHONPATH": str(ROOT)}
    _run(env, "manage.py", "migrate", "-v", "0")
    seeded = json.loads(_run(env, "manage.py", "shell", "-c", SEED).strip().splitlines()[-1])
    gunicorn_bin = Path(sys.executable).parent / "gunicorn"
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen([str(gunicorn_bin), "governance.wsgi", "-b", f"127.0.0.1:{port}", "-w", "3",
                               "-k", "gthread", "--threads", "4", "--timeout", "120"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_serving(port, server)
        yield port, seeded
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wait_until_serving(port: int, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "gunicorn exited"
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("gunicorn did not start serving")


def _create_version(port: int, token: str, payload: dict, n: int, start: threading.Barrier) -> tuple[int, bytes]:
    body = dict(payload)
    body["program"] = json.loads(json.dumps(payload["program"]))
    body["program"]["predictors"][0]["signature"]["instructions"] = f"Route the ticket (writer {n})."
    data = json.dumps({"program": "support", "payload": body}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start.wait()
    connection.request("POST", "/api/v1/versions/", body=data,
                       headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def test_concurrent_audited_writes_wait_instead_of_failing(gunicorn):
    port, seeded = gunicorn
    start = threading.Barrier(WRITERS)
    answers: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        answer = _create_version(port, seeded["token"], seeded["payload"], n, start)
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    failures = [(status, body[:200]) for status, body in answers if status != 201]
    assert len(answers) == WRITERS and not failures, f"{len(failures)} of {WRITERS} failed: {failures[:3]}"
    numbers = sorted(json.loads(body)["number"] for _, body in answers)
    assert numbers == list(range(numbers[0], numbers[0] + WRITERS))  # every write got its own number
