"""Bounded load test of the production bundle endpoint against gunicorn on 127.0.0.1, next to a ceiling.

    . .venv/bin/activate && export LITELLM_LOCAL_MODEL_COST_MAP=True
    python bench/load_bundle.py                      # measure (SQLite), print, rewrite the docs section
    python bench/load_bundle.py --databases sqlite postgresql --duration 8 --rounds 5
    python bench/load_bundle.py --duration 5 --rounds 1 --no-docs

What it does:

1. Builds a throw-away deployment in a temporary directory: SQLite database (migrated), an export signing key,
   users in their roles, a program with an approved version released as `production` (all through the
   actions), and an API token for a service account that is a program member.
2. Starts gunicorn (`governance.wsgi`, gthread workers) on a free port of 127.0.0.1 with
   GOVERNANCE_BENCH_VIEWS=1, which mounts `/api/bench/static-json`: a trivial Django view returning a
   constant JSON body through the same middleware stack. That view is the ceiling.
3. Warms both endpoints, then alternates timed runs of `GET /api/v1/programs/support/releases/production/bundle`
   (token authentication, the signed bundle from the cache, ETag) and of the ceiling, with `wrk` when it is
   installed (Debian package `wrk`) or else a Python thread-pool load generator. Every run is bounded in time
   and stops by itself; nothing but 127.0.0.1 is contacted.
4. Reports requests/s and p50/p99 latency per endpoint (median over the rounds), the bundle/ceiling ratio, and
   rewrites the "Bundle endpoint load test" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Bundle endpoint load test"
BUNDLE_PATH = "/api/v1/programs/support/releases/production/bundle"
CEILING_PATH = "/api/bench/static-json"

SETUP = r"""
import json, sys
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from governance.actions import (approve_change_request, create_program, create_user_with_roles, create_version,
    initial_payload, open_change_request, release_version, setup_role_groups)
from optimizer.bundle import generate_private_key, private_key_pem
from django.conf import settings
settings.GOVERNANCE_SIGNING_KEY_PATH.write_bytes(private_key_pem(generate_private_key()))
settings.GOVERNANCE_SIGNING_KEY_PATH.chmod(0o600)
setup_role_groups()
pw = "bench-password-1"
def user(name, roles):
    return create_user_with_roles(actor=None, username=name, password=pw, roles=roles, first_name=name.title())
author, r1, r2 = user("author", ["author"]), user("reviewer1", ["reviewer"]), user("reviewer2", ["reviewer"])
releaser, service = user("releaser", ["releaser"]), user("svc-support", [])
spec = json.loads(open("demo/support_tickets/program.json").read())
program = create_program(actor=author, slug="support", name="Support triage", spec=spec,
                         members=[r1, r2, releaser, service])
payload = initial_payload(program)
payload["program"]["predictors"][0]["demos"] = [
    {"ticket": f"example ticket number {i} about an invoice", "category": "billing"} for i in range(8)]
version = create_version(program, actor=author, payload=payload, scores={"val": 0.8, "test": 0.78})
cr = open_change_request(version, actor=author, title="bench")
approve_change_request(cr, actor=r1, password=pw)
approve_change_request(cr, actor=r2, password=pw)
version.refresh_from_db()
release_version(version, actor=releaser, reason="bench")
print("TOKEN=" + Token.objects.create(user=service).key)
"""


@dataclass
class Result:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(workdir: Path, database_url: str) -> tuple[dict[str, str], str]:
    env = {**os.environ, "GOVERNANCE_VAR_DIR": str(workdir), "DATABASE_URL": database_url,
           "GOVERNANCE_SIGNING_KEY_PATH": str(workdir / "signing_key.pem"), "GOVERNANCE_SIGNING_KEY_PEM": "",
           "DJANGO_SETTINGS_MODULE": "governance.settings", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "GOVERNANCE_BENCH_VIEWS": "1", "DEBUG": "0", "LOG_LEVEL": "WARNING", "CELERY_BROKER_URL": ""}
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    token = re.search(r"TOKEN=(\w+)", out).group(1)
    return env, token


def create_pg_database(admin_url: str) -> tuple[str, str]:
    """A fresh PostgreSQL database for the run: (its URL, its name)."""
    import psycopg

    name = f"bench_bundle_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def drop_pg_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_gunicorn(env: dict[str, str], port: int, workers: int, threads: int) -> subprocess.Popen:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    if gunicorn is None:
        sys.exit("gunicorn is not installed: pip install -e '.[dev]'")
    process = subprocess.Popen(
        [gunicorn, "governance.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--threads", str(threads), "--worker-class", "gthread", "--keep-alive", "5", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{CEILING_PATH}", timeout=1).read()
            return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    sys.exit("gunicorn did not start within 60 s")


def warm(port: int, token: str, workers: int) -> int:
    """Enough requests that every worker process has built its cached bundle; returns the bundle size."""
    size = 0
    for _ in range(workers * 20):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{BUNDLE_PATH}",
                                         headers={"Authorization": f"Token {token}"})
        body = urllib.request.urlopen(request, timeout=10).read()
        json.loads(body)
        size = len(body)
        urllib.request.urlopen(f"http://127.0.0.1:{port}{CEILING_PATH}", timeout=10).read()
    return size


def run_wrk(name: str, url: str, headers: dict[str, str], duration: int, connections: int, threads: int) -> Result:
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency", "--timeout", "10s"]
    for key, value in headers.items():
        args += ["-H", f"{key}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(name, float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                  _wrk_ms(re.search(r"\s50%\s+([\d.]+\w+)", out).group(1)),
                  _wrk_ms(re.search(r"\s99%\s+([\d.]+\w+)", out).group(1)), requests,
                  errors + (int(non2xx.group(1)) if non2xx else 0))


def _wrk_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_python(name: str, port: int, path: str, headers: dict[str, str], duration: int, connections: int) -> Result:
    """Fallback load generator: `connections` threads with keep-alive connections, each bounded by `duration`."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration

    def worker() -> None:
        local, conn = [], HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                conn.close()
                conn, ok = HTTPConnection("127.0.0.1", port, timeout=10), False
            if ok:
                local.append(time.perf_counter() - started)
            else:
                with lock:
                    errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0
    return Result(name, len(latencies) / elapsed, pick(0.50), pick(0.99), len(latencies), errors[0])


def median_result(results: list[Result]) -> Result:
    return Result(results[0].name, statistics.median(r.requests_per_s for r in results),
                  statistics.median(r.p50_ms for r in results), statistics.median(r.p99_ms for r in results),
                  sum(r.requests for r in results), sum(r.errors for r in results))


def write_docs(text: str) -> None:
    current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text.rstrip("\n"), current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    DOCS.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


def report(runs: list[tuple[str, Result, Result, list[float]]], *, args: argparse.Namespace, tool: str, size: int,
           load: str, cpu: tuple[float, float]) -> str:
    rows, verdicts = [], []
    for database, bundle, ceiling, ratios in runs:
        ratio = statistics.median(ratios)
        verdicts.append(f"{database}: **{ratio:.0%} of the ceiling** (median of the per-round ratios; rounds ranged "
                        f"{min(ratios):.0%} to {max(ratios):.0%})")
        for name, result in (("bundle", bundle), ("ceiling", ceiling)):
            rows.append(f"| {database} | {name} | {result.requests_per_s:,.0f} | {result.p50_ms:.1f} | "
                        f"{result.p99_ms:.1f} | {result.requests:,} | {result.errors} |")
    databases = " ".join(database for database, *_ in runs)
    table = "\n".join(rows)
    return f"""{SECTION}

Production services poll `GET /api/v1/programs/<slug>/releases/<label>/bundle` (token auth, the signed bundle
of {size:,} bytes, strong ETag). The ceiling is `/api/bench/static-json`: a trivial Django view returning a
constant JSON body on the same server and middleware (mounted only with `GOVERNANCE_BENCH_VIEWS=1`).

Command:

```sh
python bench/load_bundle.py --databases {databases} --duration {args.duration} --rounds {args.rounds} \\
    --connections {args.connections} --workers {args.workers} --threads {args.threads}
```

Machine: {os.cpu_count()} cores, Python {platform.python_version()}; gunicorn with {args.workers} gthread workers x
{args.threads} threads on 127.0.0.1; load generator {tool} with {args.connections} keep-alive connections on the
same machine (client and server share the 2 cores). PostgreSQL runs locally with persistent connections; SQLite is
a file. Medians of {args.rounds} alternating rounds of {args.duration} s per endpoint. The machine is shared with
other work (load average before the run: {load}), so absolute figures move from run to run; the ratio, measured
in alternating rounds, is the figure to read.

| database | endpoint | requests/s | p50 ms | p99 ms | requests | errors |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
{table}

Result: {"; ".join(verdicts)}. Target: at least 80 %.

CPU cost per request in one process (Django test client, no network, SQLite, {CPU_REQUESTS} requests each, process
CPU time of the fastest of 6 alternating blocks, so other work on the machine barely moves it): bundle {cpu[0]:.3f} ms, ceiling {cpu[1]:.3f} ms, i.e. the
bundle endpoint at **{cpu[1] / cpu[0]:.0%}** of the ceiling's throughput per core.

How the endpoint stays close to a static view:

- the signed bundle is built once per label state (program, label, version served, kill switch, signing key)
  and kept in Django's cache plus a small per-process memo, so a fetch neither signs nor writes an Export row
  or audit event (one `version.exported` event is written when a bundle is built);
- the token's user, their right to see the program and what the label serves are read in one indexed query,
  reused for at most `GOVERNANCE_BUNDLE_STATE_TTL` seconds (default 2) per process; changes made through the
  same process (release, rollback, kill switch, membership, roles, tokens) clear it at once, other processes
  see them within the TTL (clients poll with their own TTL, 60 s by default);
- no DRF dispatch on the hot path: anything unusual (no token, a session, a refusal) goes to the regular DRF
  view, which answers with the same body and headers or the precise error.
"""


CPU_REQUESTS = 3000

CPU_SCRIPT = r"""
import sys, time
import django
django.setup()
from django.test import Client
client, token, n, bundle_path, ceiling_path = Client(), sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
auth = {"HTTP_AUTHORIZATION": "Token " + token}
for _ in range(200):
    assert client.get(bundle_path, **auth).status_code == 200 and client.get(ceiling_path).status_code == 200
costs = {"bundle": [], "ceiling": []}
for _ in range(6):  # alternating blocks; the fastest block of each is the least disturbed by other work
    for name, path, headers in (("bundle", bundle_path, auth), ("ceiling", ceiling_path, {})):
        started = time.process_time()
        for _ in range(n // 6):
            client.get(path, **headers)
        costs[name].append((time.process_time() - started) / (n // 6) * 1000)
print(f"CPU={min(costs['bundle']):.4f},{min(costs['ceiling']):.4f}")
"""


def measure_cpu() -> tuple[float, float]:
    """Milliseconds of process CPU per request (bundle, ceiling), in process, on a throw-away SQLite database."""
    with tempfile.TemporaryDirectory(prefix="bench-bundle-cpu-") as tmp:
        env, token = prepare(Path(tmp), f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        out = subprocess.run([sys.executable, "-c", CPU_SCRIPT, token, str(CPU_REQUESTS), BUNDLE_PATH, CEILING_PATH], cwd=ROOT, env=env,
                             check=True, capture_output=True, text=True, timeout=600).stdout
    bundle, ceiling = re.search(r"CPU=([\d.]+),([\d.]+)", out).groups()
    return float(bundle), float(ceiling)


def measure(args: argparse.Namespace, database: str, use_wrk: bool) -> tuple[Result, Result, int, list[float]]:
    pg_name = None
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as tmp:
        if database == "postgresql":
            database_url, pg_name = create_pg_database(args.pg_admin_url)
        else:
            database_url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        env, token = prepare(Path(tmp), database_url)
        port = free_port()
        server = start_gunicorn(env, port, args.workers, args.threads)
        try:
            size = warm(port, token, args.workers)
            auth = {"Authorization": f"Token {token}"}
            results: dict[str, list[Result]] = {"bundle": [], "ceiling": []}
            for round_number in range(args.rounds):
                for name, path, headers in (("bundle", BUNDLE_PATH, auth), ("ceiling", CEILING_PATH, {})):
                    if use_wrk:
                        result = run_wrk(name, f"http://127.0.0.1:{port}{path}", headers, args.duration,
                                         args.connections, threads=2)
                    else:
                        result = run_python(name, port, path, headers, args.duration, args.connections)
                    results[name].append(result)
                    print(f"{database} round {round_number + 1} {name:8s} {result.requests_per_s:8.0f} req/s  "
                          f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  errors {result.errors}",
                          flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            if pg_name:
                drop_pg_database(args.pg_admin_url, pg_name)
    ratios = [b.requests_per_s / c.requests_per_s for b, c in zip(results["bundle"], results["ceiling"])
              if c.requests_per_s]
    return median_result(results["bundle"]), median_result(results["ceiling"]), size, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"])
    parser.add_argument("--pg-admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="where a throw-away PostgreSQL database is created and dropped")
    parser.add_argument("--duration", type=int, default=10, help="seconds per timed run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per endpoint (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--python-client", action="store_true", help="use the Python load generator, not wrk")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 10:
        sys.exit("--duration must be 1..120 s and --rounds 1..10 (the test is bounded)")
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    runs, size = [], 0
    for database in args.databases:
        bundle, ceiling, size, ratios = measure(args, database, use_wrk)
        runs.append((database, bundle, ceiling, ratios))
    cpu = measure_cpu()
    print(f"in-process CPU per request: bundle {cpu[0]:.3f} ms, ceiling {cpu[1]:.3f} ms", flush=True)
    text = report(runs, args=args, tool="wrk 4.1 (2 threads)" if use_wrk else "Python threads", size=size, load=load,
                  cpu=cpu)
    print(text)
    if not args.no_docs:
        write_docs(text)
        print(f"wrote the section to {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
