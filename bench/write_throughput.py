"""Audited writes per second on PostgreSQL with 1, 4 and 16 concurrent writers (issue 15 item 3).

Each writer is its own process (own connection, no shared GIL) working in its own program, through the real
actions: two reviewers' approvals of a change request the system has evaluated, the release of the approved
version, and a dataset import - four audited actions per cycle, each a transaction that appends to the audit
chain. Every audited write takes the chain's advisory lock until its transaction commits; the benchmark measures
how long writers wait for that lock (`lock wait`), which tells whether the lock is what limits throughput.

The ablation `--no-chain-lock` replaces the chain lock with a no-op inside the benchmark's writer processes only
(governance/audit.py is unchanged). Concurrent events then read the same chain head and the chain forks, so the
ablation is not a design: it is an upper bound on what any design without this lock (one chain per program plus a
global chain of checkpoints, say) could gain. `--compare` measures both, interleaved, `--rounds` times, because
other work shares this machine's 2 cores; each row records the load average and how busy the CPUs were.

    python bench/write_throughput.py --compare --rounds 2   # 1, 4, 16 writers, lock / no lock interleaved
    python bench/write_throughput.py --report               # docs only
    python bench/write_throughput.py --writers 1 --profile /tmp/writer.prof   # cProfile of writer 0

Passwords use Django's MD5 hasher here: the approvals' password check (PBKDF2, ~0.3 s of CPU by design) runs
before the transaction, outside the lock, and would measure the CPU, not the chain.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import resource
import statistics
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
ONE_CHAIN = "one chain"
NO_CHAIN_LOCK = "no chain lock (ablation: upper bound of any per-program design)"


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


def admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def template_name(writers: int) -> str:
    return f"{DATABASE}_t{writers}"


def build_template(writers: int, cycles: int) -> None:
    """Migrate and set up once per writer count; every measurement starts from a copy (setup takes minutes)."""
    from django.db import connections

    from tests.optimizer.fake_lm import FakeLMServer
    from tests.optimizer.simulated import SimulatedClassifier

    admin_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}")
    with FakeLMServer(SimulatedClassifier(min_demos=0)) as lm:
        setup(writers, cycles, lm.url)
    connections.close_all()
    admin_sql(f"DROP DATABASE IF EXISTS {template_name(writers)}",
              f"CREATE DATABASE {template_name(writers)} TEMPLATE {DATABASE}")


def fresh_database(writers: int) -> None:
    admin_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)",
              f"CREATE DATABASE {DATABASE} TEMPLATE {template_name(writers)}")


def drop_templates(writer_counts: list[int]) -> None:
    admin_sql(*(f"DROP DATABASE IF EXISTS {template_name(writers)}" for writers in writer_counts))


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


class SqlMeter:
    """Counts the queries and commits of one writer and the time spent in them (Django's execute wrapper)."""

    def __init__(self) -> None:
        self.queries, self.sql_seconds, self.commits, self.commit_seconds = 0, 0.0, 0, 0.0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries += 1
            self.sql_seconds += time.perf_counter() - started

    def wrap_commit(self, connection: Any) -> None:
        commit = connection.commit

        def timed_commit() -> None:  # COMMIT bypasses the execute wrapper; it is where the WAL is flushed
            started = time.perf_counter()
            commit()
            self.commits += 1
            self.commit_seconds += time.perf_counter() - started

        connection.commit = timed_commit


def patch_chain_lock(audit: Any, waited: list[float], chain_lock: bool) -> None:
    """Time every wait for the chain lock; with chain_lock=False (the ablation) skip that lock altogether."""
    lock = audit._lock

    def timed_lock(lock_id: int) -> None:
        if not chain_lock and lock_id == audit._CHAIN_LOCK_ID:
            return  # ablation: the chain forks, an upper bound for any design without this lock
        started = time.perf_counter()
        lock(lock_id)
        waited[0] += time.perf_counter() - started

    audit._lock = timed_lock


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def writer(index: int, start_at: float, out: Any, chain_lock: bool, profile_path: str) -> None:
    """One process: every change request of program w{index}: approve twice, release, import a dataset."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from governance import audit
    from governance.models import ChangeRequest, ChangeRequestStatus

    waited, meter = [0.0], SqlMeter()
    patch_chain_lock(audit, waited, chain_lock)
    users = {u.username: u for u in get_user_model().objects.all()}
    crs = list(ChangeRequest.objects.filter(version__program__slug=f"w{index}", status=ChangeRequestStatus.OPEN)
               .select_related("version", "version__program").order_by("id"))
    meter.wrap_commit(connection)
    profiler = cProfile.Profile() if profile_path and index == 0 else None
    while time.time() < start_at:
        time.sleep(0.001)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    with connection.execute_wrapper(meter):
        if profiler:
            profiler.enable()
        done = run_cycles(crs, users)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_path)
    out.put({"writer": index, "actions": done, "seconds": time.perf_counter() - started, "lock_wait": waited[0],
             "cpu": cpu_seconds() - cpu_started, "queries": meter.queries, "sql": meter.sql_seconds,
             "commits": meter.commits, "commit": meter.commit_seconds})


def run_cycles(crs: list[Any], users: dict[str, Any]) -> int:
    """The measured work: per change request approve twice, release, import a dataset; the audited actions done."""
    from governance import actions

    done = 0
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
    return done


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (every process, PostgreSQL included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run(writers: int, chain_lock: bool, profile_path: str = "") -> dict[str, Any]:
    """One measurement on a fresh copy of the writer count's template database."""
    from django.db import connections

    connections.close_all()  # children open their own connections
    fresh_database(writers)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 2
    processes = [context.Process(target=writer, args=(w, start_at, out, chain_lock, profile_path))
                 for w in range(writers)]
    for process in processes:
        process.start()
    time.sleep(max(0.0, start_at - time.time()))
    load, cpu_before = os.getloadavg()[0], cpu_times()
    results = [out.get(timeout=1800) for _ in processes]
    cpu_after = cpu_times()
    for process in processes:
        process.join()
    return summarize(writers, results, load, cpu_before, cpu_after)


def summarize(writers: int, results: list[dict[str, Any]], load: float, cpu_before: tuple[int, int],
              cpu_after: tuple[int, int]) -> dict[str, Any]:
    wall = max(r["seconds"] for r in results)
    total = sum(r["actions"] for r in results)
    busy = sum(r["seconds"] for r in results)
    lock_wait = sum(r["lock_wait"] for r in results)
    sql = sum(r["sql"] for r in results) - lock_wait  # the lock is taken by a query; count it once, as lock wait
    return {"writers": writers, "actions": total, "wall_seconds": round(wall, 2),
            "actions_per_second": round(total / wall, 1), "lock_wait_share": round(lock_wait / busy, 3),
            "load_average_1m": round(load, 2),
            "machine_cpu_busy_share": round((cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]), 3),
            "writer_cpu_ms_per_action": round(1000 * sum(r["cpu"] for r in results) / total, 1),
            "queries_per_action": round(sum(r["queries"] for r in results) / total, 1),
            "sql_share": round(sql / busy, 3),
            "commit_ms_per_action": round(1000 * sum(r["commit"] for r in results) / total, 1)}


def report(results: Path = RESULTS) -> None:
    data = json.loads(results.read_text())
    lines = [SECTION_START, "## Audited writes per second (PostgreSQL)", "",
             f"Measured by `bench/write_throughput.py --compare --rounds {data.get('rounds', 1)}` on this 2-core "
             f"machine, commit {data['commit']}: each writer a process in its own program, cycles of approve, "
             "approve, release, dataset import through the real actions (each an audited transaction). *Lock wait* "
             "is the share of the writers' time spent waiting for the audit chain's lock; *CPU busy* is the share of "
             "both cores in use during the measurement (every process: the writers, PostgreSQL and the other work "
             "on the machine); *load* is the 1-minute load average at its start.", "",
             f"*{NO_CHAIN_LOCK}* is an ablation, not a design: each writer process replaces the chain lock with a "
             "no-op, so concurrent events read the same chain head and the chain forks. It bounds from above what "
             "any design without the single lock (one chain per program plus a global chain of checkpoints) could "
             "gain on this machine.", "",
             *summary_table(data), "", *rows_table(data), SECTION_END]
    text = DOCS.read_text()  # read right before writing: other sections of the file change under us
    section = "\n".join(lines)
    if SECTION_START in text:
        text = text[:text.index(SECTION_START)] + section + text[text.index(SECTION_END) + len(SECTION_END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)


def summary_table(data: dict[str, Any]) -> list[str]:
    """Mean actions/s over the rounds, per writer count, with and without the lock."""
    with_lock, without = data["designs"].get(ONE_CHAIN, []), data["designs"].get(NO_CHAIN_LOCK, [])
    lines = [f"| writers | {ONE_CHAIN}: actions/s (rounds) | no chain lock: actions/s (rounds) | gain |",
             "|---|---|---|---|"]
    for writers in sorted({row["writers"] for row in with_lock}):
        a = [row["actions_per_second"] for row in with_lock if row["writers"] == writers]
        b = [row["actions_per_second"] for row in without if row["writers"] == writers]
        if a and b:
            gain = statistics.mean(b) / statistics.mean(a) - 1
            lines.append(f"| {writers} | {statistics.mean(a):.1f} ({', '.join(map(str, a))}) | "
                         f"{statistics.mean(b):.1f} ({', '.join(map(str, b))}) | {gain:+.0%} |")
    return lines


def rows_table(data: dict[str, Any]) -> list[str]:
    lines = ["| design | round | writers | audited actions | wall s | actions/s | lock wait | CPU busy | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for design, rows in data["designs"].items():
        for row in rows:
            cpu = f"{row['machine_cpu_busy_share']:.0%}" if "machine_cpu_busy_share" in row else "-"
            lines.append(f"| {design} | {row.get('round', '-')} | {row['writers']} | {row['actions']} | "
                         f"{row['wall_seconds']} | {row['actions_per_second']} | {row['lock_wait_share']:.0%} | "
                         f"{cpu} | {row.get('load_average_1m', '-')} |")
    return lines


def measure(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every writer count, `rounds` times; with --compare the lock and the ablation back to back."""
    chain_locks = [True, False] if args.compare else [not args.no_chain_lock]
    designs: dict[str, list[dict[str, Any]]] = {ONE_CHAIN if lock else NO_CHAIN_LOCK: [] for lock in chain_locks}
    for writers in args.writers:
        build_template(writers, cycles=max(1, args.actions // 4 // writers))
    try:
        for round_ in range(1, args.rounds + 1):
            for writers in args.writers:
                for lock in chain_locks:
                    row = {"round": round_, **run(writers, lock, args.profile)}
                    designs[ONE_CHAIN if lock else NO_CHAIN_LOCK].append(row)
                    print(json.dumps({"chain_lock": lock, **row}), file=sys.stderr, flush=True)
    finally:
        drop_templates(args.writers)
    return designs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--actions", type=int, default=320, help="audited actions per measurement (all writers)")
    parser.add_argument("--no-chain-lock", action="store_true", help="the ablation only (see above)")
    parser.add_argument("--compare", action="store_true", help="with and without the chain lock, interleaved")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", default="", help="write writer 0's cProfile stats to this file")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the docs are updated only for the default")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        return report()
    with tempfile.TemporaryDirectory(prefix="governance-writes-") as workdir:
        configure(workdir)
        designs = measure(args)
    data = json.loads(args.results.read_text()) if args.results.exists() else {"designs": {}}
    data["designs"].update(designs)
    data["commit"] = os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip()
    data["rounds"] = args.rounds
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(data, indent=1) + "\n")
    if args.results == RESULTS:
        report()


if __name__ == "__main__":
    main()
