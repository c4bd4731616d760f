"""Audited writes per second on PostgreSQL with 1, 4 and 16 concurrent writers (issue 15 item 3).

Each writer is its own process (own connection, no shared GIL) working in its own program, through the real
actions: two reviewers' approvals of a change request the system has evaluated, the release of the approved
version, and a dataset import - four audited actions per cycle, each a transaction that appends to the audit
chain. Every audited write takes the chain's advisory lock until its transaction commits; the benchmark measures
how long writers wait for that lock (`lock wait`), which tells whether the lock is what limits throughput.

    python bench/write_throughput.py                 # 1, 4, 16 writers; results in bench/results/, docs section
    python bench/write_throughput.py --report        # docs only

Passwords use Django's MD5 hasher here: the approvals' password check (PBKDF2, ~0.3 s of CPU by design) runs
before the transaction, outside the lock, and would measure the CPU, not the chain.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "write_throughput.json"
DOCS = ROOT / "docs" / "benchmarks.md"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "governance_writes"
PASSWORD = "Writer-Secret-42"
SECTION_START, SECTION_END = "<!-- writes:start -->", "<!-- writes:end -->"


def configure(workdir: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="governance.settings", LITELLM_LOCAL_MODEL_COST_MAP="True",
        GOVERNANCE_VAR_DIR=workdir, GOVERNANCE_AUDIT_KEY="7e" * 32, GOVERNANCE_AUDIT_CHECKPOINT_EVERY="0",
        GOVERNANCE_AUDIT_ANCHOR_PATH="", CELERY_BROKER_URL="", GOVERNANCE_LM_API_KEY="x",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def fresh_database() -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")


def setup(writers: int, cycles: int, lm_url: str) -> None:
    """Programs w0..w{writers-1}, each with `cycles` change requests evaluated by the system (on the fake LM)."""
    from django.core.management import call_command

    from governance import actions
    from governance.evaluator import finish_pending
    from governance.models import Evaluation
    from tests.governance.export_helpers import SPEC
    from tests.optimizer.simulated import load_rows

    call_command("migrate", verbosity=0)
    actions.setup_role_groups()
    users = {name: actions.create_user_with_roles(actor=None, username=name, password=PASSWORD, roles=[role])
             for name, role in (("author", "author"), ("reviewer1", "reviewer"), ("reviewer2", "reviewer"),
                                ("releaser", "releaser"))}
    rows = [row for row in load_rows("test") if row["category"] in SPEC["predictors"][0]["signature"]["outputs"][0]
            ["choices"]][:8]
    for w in range(writers):
        program = actions.create_program(actor=users["author"], slug=f"w{w}", name=f"Writer {w}", spec=SPEC,
                                         lm_config={"model": "text-completion-openai/fake", "api_base": lm_url},
                                         members=[users["reviewer1"], users["reviewer2"], users["releaser"]])
        actions.import_dataset(program, actor=users["author"], split="test", name="test", rows=rows)
        base = actions.initial_payload(program)
        for c in range(cycles):
            payload = json.loads(json.dumps(base))
            payload["program"]["predictors"][0]["signature"]["instructions"] = f"Route the ticket ({c})."
            version = actions.create_version(program, actor=users["author"], payload=payload, note=f"cycle {c}")
            actions.open_change_request(version, actor=users["author"], title=f"Cycle {c}", impact="low")
    finish_pending(list(Evaluation.objects.all()))  # the system's evaluations, as the job backend runs them


def writer(index: int, start_at: float, out: Any) -> None:
    """One process: every change request of program w{index}: approve twice, release, import a dataset."""
    from django.contrib.auth import get_user_model

    from governance import actions, audit
    from governance.models import ChangeRequest, ChangeRequestStatus

    waited = [0.0]
    lock = audit._lock

    def timed_lock(lock_id: int) -> None:  # how long this writer waits for the chain
        started = time.perf_counter()
        lock(lock_id)
        waited[0] += time.perf_counter() - started

    audit._lock = timed_lock
    users = {u.username: u for u in get_user_model().objects.all()}
    crs = list(ChangeRequest.objects.filter(version__program__slug=f"w{index}", status=ChangeRequestStatus.OPEN)
               .select_related("version", "version__program").order_by("id"))
    while time.time() < start_at:
        time.sleep(0.001)
    started, done = time.perf_counter(), 0
    for n, cr in enumerate(crs):
        for reviewer in ("reviewer1", "reviewer2"):
            cr.refresh_from_db()
            actions.approve_change_request(cr, actor=users[reviewer], password=PASSWORD,
                                           content_hash=cr.version.content_hash)
        cr.version.refresh_from_db()
        actions.release_version(cr.version, actor=users["releaser"], reason="throughput benchmark")
        actions.import_dataset(cr.version.program, actor=users["author"], split="val", name=f"batch {n}",
                               rows=[{"ticket": f"ticket {n}-{i}", "category": "billing"} for i in range(20)])
        done += 4
    out.put({"writer": index, "actions": done, "seconds": time.perf_counter() - started, "lock_wait": waited[0]})


def run(writers: int, cycles: int) -> dict[str, Any]:
    from tests.optimizer.fake_lm import FakeLMServer
    from tests.optimizer.simulated import SimulatedClassifier

    fresh_database()
    with FakeLMServer(SimulatedClassifier(min_demos=0)) as lm:
        setup(writers, cycles, lm.url)
    from django.db import connections

    connections.close_all()  # children open their own connections
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 2
    processes = [context.Process(target=writer, args=(w, start_at, out)) for w in range(writers)]
    for process in processes:
        process.start()
    results = [out.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    wall = max(r["seconds"] for r in results)
    total = sum(r["actions"] for r in results)
    busy = sum(r["seconds"] for r in results)
    return {"writers": writers, "actions": total, "wall_seconds": round(wall, 2),
            "actions_per_second": round(total / wall, 1),
            "lock_wait_share": round(sum(r["lock_wait"] for r in results) / busy, 3)}


def report() -> None:
    data = json.loads(RESULTS.read_text())
    lines = [SECTION_START, "## Audited writes per second (PostgreSQL)", "",
             f"Measured by `bench/write_throughput.py` on this 2-core machine, commit {data['commit']}: each writer "
             "a process in its own program, cycles of approve, approve, release, dataset import through the real "
             "actions (each an audited transaction). *Lock wait* is the share of the writers' time spent waiting "
             "for the audit chain's lock.", "",
             "| design | writers | audited actions | wall s | actions/s | lock wait |", "|---|---|---|---|---|---|"]
    for design, rows in data["designs"].items():
        for row in rows:
            lines.append(f"| {design} | {row['writers']} | {row['actions']} | {row['wall_seconds']} | "
                         f"{row['actions_per_second']} | {row['lock_wait_share']:.0%} |")
    lines.append(SECTION_END)
    text = DOCS.read_text()
    section = "\n".join(lines)
    if SECTION_START in text:
        text = text[:text.index(SECTION_START)] + section + text[text.index(SECTION_END) + len(SECTION_END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--actions", type=int, default=320, help="audited actions per measurement (all writers)")
    parser.add_argument("--design", default="one chain", help="the label of this code's chain design in the table")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        return report()
    with tempfile.TemporaryDirectory(prefix="governance-writes-") as workdir:
        configure(workdir)
        rows = []
        for writers in args.writers:
            rows.append(run(writers, cycles=max(1, args.actions // 4 // writers)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"designs": {}}
    data["designs"][args.design] = rows
    data["commit"] = os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")
    report()


if __name__ == "__main__":
    main()
