"""Trials per minute of one optimization run executed by 1, 2 or 4 Celery workers (PostgreSQL + Redis).

    . .venv/bin/activate && export LITELLM_LOCAL_MODEL_COST_MAP=True
    python bench/run_throughput.py --model fake --latency 0.5 --workers 1 2 4 --trials 24 --rounds 2
    python bench/run_throughput.py --model local --trials 8 --sizes 42 20 20  # Gemma 3 270M in each worker

What it does:

1. Creates a throw-away PostgreSQL database (dropped at the end), migrates it and sets up, through the actions,
   users, the demo support-ticket program and its train/val/test datasets.
2. Starts max(--workers) `celery -A governance worker --pool=solo` processes on a queue of its own (Redis
   broker), and warms them up with a short spread run (each imports litellm and, for the local model, loads
   llama.cpp).
3. For each worker count (`--rounds` times, alternating): starts a run with its own seed and a cold response
   cache (fake model: a new fake server, whose URL is part of every cache key; local model: the run's own seed
   draws other demo sets and another example order, so few prompts repeat), spreads it over that many workers
   (`runner.spread_run`), waits for it to finish, and reads the Trial rows. Trials per minute = trials / (last
   trial's end - first trial's start) * 60: the search phase only, without the candidate phase before it and
   the final evaluation after.
4. Prints a table and writes bench/results/run_throughput_<model>[_<latency>ms].json (with every trial's
   examples, calls, seconds and time). Nothing but 127.0.0.1 is contacted.

The fake model sleeps `--latency` seconds per call (a remote API; it serves any number of calls at once) and
answers like a small classifier that is never perfect (`noisy_classifier`). Wall-clock figures depend on machine
load: the script records the load average before and after each measurement next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("fake", "local"), default="fake")
    parser.add_argument("--trials", type=int, default=16, help="trials per measured run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--latency", type=float, default=0.05, help="fake LM seconds per call")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs=3, default=[245, 70, 105], metavar=("TRAIN", "VAL", "TEST"),
                        help="rows of the demo train/val/test files to use (the local model wants small ones)")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file (default bench/results/run_throughput_<model>[_<latency>ms].json)")
    args = parser.parse_args()
    if args.out is None:
        latency = f"_{round(args.latency * 1000)}ms" if args.model == "fake" and args.latency != 0.05 else ""
        args.out = RESULTS / f"run_throughput_{args.model}{latency}.json"
    return args


def create_database(server: str) -> str:
    import psycopg

    name = f"governance_bench_runs_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_program(lm_config: dict[str, Any], sizes: list[int]) -> Any:
    from governance.actions import create_program, create_user_with_roles, import_dataset, setup_role_groups
    from tests.optimizer.simulated import DEMO_DIR, load_rows

    setup_role_groups()
    author = create_user_with_roles(actor=None, username="bench-author", password="bench-pass-123",
                                    roles=["author"])
    program = create_program(actor=author, slug="support", name="Support triage", metric="choice",
                             spec=json.loads((DEMO_DIR / "program.json").read_text()), lm_config=lm_config)
    for split, size in zip(("train", "val", "test"), sizes):
        import_dataset(program, actor=author, split=split, name=split, rows=load_rows(split)[:size])
    return program, author


def noisy_classifier() -> type:
    """The fake model's answers: right on part of the tickets, more often with more demos and under some
    instructions than others, never on all of them. Unlike tests.optimizer.simulated's classifier (always right
    from 14 demos on), no configuration reaches 100% on validation, so trials keep racing as they do against a
    real model instead of stopping at the first perfect one. Each answer is a function of the prompt alone: the
    response cache replays it, and every worker gets the same answer to the same prompt."""
    from tests.optimizer.simulated import SimulatedClassifier

    class Noisy(SimulatedClassifier):
        def __call__(self, prompt: str, request: dict[str, Any]) -> str:
            answer = super().__call__(prompt, request)
            if not re.search(r"\nCategory:\s*$", prompt) or "Ticket: " not in prompt:
                return answer  # proposal and summary prompts
            ticket = prompt.rsplit("Ticket: ", 1)[1].rsplit("\nCategory:", 1)[0].strip()
            truth = self.labels.get(ticket, "feedback")
            demos = prompt.count("\nCategory: ")
            instruction_effect = zlib.crc32(prompt.split("\n", 1)[0].encode()) % 11 / 100
            skill = min(0.35 + 0.45 * demos / (demos + 6) + instruction_effect, 0.9)
            if zlib.crc32(prompt.encode()) % 1000 < 1000 * skill:
                return f" {truth}\n"
            return " billing\n" if truth != "billing" else " refund\n"

    return Noisy


class Workers:
    def __init__(self, count: int, env: dict[str, str], queue: str, log_dir: Path) -> None:
        self.procs = []
        for i in range(count):
            log = (log_dir / f"bench-worker-{i}.log").open("wb")
            cmd = [sys.executable, "-m", "celery", "-A", "governance", "worker", "--pool=solo", "-Q", queue,
                   "-n", f"bench{i}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGQUIT)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_once(program: Any, author: Any, *, workers: int, trials: int, seed: int) -> dict[str, Any]:
    from governance import runner
    from governance.actions import start_run
    from governance.models import OptimizationRun

    run = start_run(program, actor=author, seed=seed, num_trials=trials)
    if workers > 1:
        runner.spread_run(run.pk, workers=workers)
    while True:
        run.refresh_from_db()
        if run.status not in ("queued", "running"):
            break
        time.sleep(1)
    if run.status != "succeeded":
        raise SystemExit(f"run {run.pk} {run.status}: {run.error}")
    trials = list(run.trials.order_by("created_at").values("number", "examples", "calls", "seconds", "created_at"))
    times = [t["created_at"] for t in trials]
    # The search phase: from the start of the first trial (its record time less its duration) to the last
    # record. Counting from the first record instead left out the first trial, with one worker always a long
    # prior configuration, with several a short one, which favoured one worker.
    started = min(t["created_at"] - timedelta(seconds=t["seconds"]) for t in trials)
    span = (times[-1] - started).total_seconds()
    run = OptimizationRun.objects.get(pk=run.pk)
    busy = sum(t["seconds"] for t in trials)
    return {"workers": workers, "run": run.pk, "trials": len(times), "search_seconds": round(span, 1),
            "trials_per_minute": round(len(times) / span * 60, 1) if span > 0 else None,
            "run_wall_seconds": round(run.wall_seconds, 1), "calls": run.calls,
            "search_calls": sum(t["calls"] for t in trials),
            "search_examples": sum(t["examples"] for t in trials),
            # inside trials, summed over workers: the rest of workers x span is time between trials
            "trial_seconds_summed": round(busy, 1),
            "per_worker": run.progress.get("workers", {}),
            "trials_detail": [[t["number"], t["examples"], t["calls"], round(t["seconds"], 2),
                               round((t["created_at"] - started).total_seconds(), 2)] for t in trials]}


def main() -> None:
    args = parse_args()
    database = create_database(args.pg)
    workdir = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    queue = f"bench-runs-{uuid.uuid4().hex[:8]}"
    os.environ.update({"DATABASE_URL": f"{args.pg}/{database}", "CELERY_BROKER_URL": args.redis,
                       "GOVERNANCE_VAR_DIR": str(workdir), "GOVERNANCE_LM_API_KEY": "x",
                       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DJANGO_SETTINGS_MODULE": "governance.settings",
                       "OPTIMIZER_LOCAL_THREADS": "1", "LOG_LEVEL": "WARNING", "DB_CONN_MAX_AGE": "0",
                       # a throw-away deployment: the first audited write creates its audit key in the work dir,
                       # and its workers may start with the development SECRET_KEY
                       "GOVERNANCE_AUDIT_KEY_AUTOCREATE": "1", "GOVERNANCE_ALLOW_DEV_SECRET_KEY": "1",
                       # every run makes exactly --trials trials: patience would stop runs after different
                       # numbers of trials depending on what the workers happened to sample
                       "GOVERNANCE_RUN_PATIENCE": "0"})
    import django

    django.setup()
    from django.core.management import call_command

    from governance.actions import update_program
    from governance.celery import app

    NoisyClassifier = noisy_classifier()  # noqa: N806 - a class
    from tests.optimizer.fake_lm import FakeLMServer

    app.conf.task_default_queue = queue
    call_command("migrate", verbosity=0)

    class Slow(NoisyClassifier):
        def __call__(self, prompt: str, request: dict[str, Any]) -> str:
            time.sleep(args.latency)  # a remote API's latency; the fake itself answers in microseconds
            return super().__call__(prompt, request)

    servers: list[Any] = []

    def fresh_endpoint(index: int) -> dict[str, Any]:
        """An LM configuration no answer is cached for."""
        if args.model == "local":
            return {"model": "local/gemma-3-270m"}  # cold enough: each run's seed draws other demos and order
        servers.append(FakeLMServer(Slow()).start())
        return {"model": "text-completion-openai/fake", "api_base": servers[-1].url}

    program, author = setup_program(fresh_endpoint(0), args.sizes)
    pool = Workers(max(args.workers), dict(os.environ, GOVERNANCE_LM_CACHE_PATH=str(workdir / "cache.sqlite3")),
                   queue, workdir)
    results = []
    try:
        print(f"warming up {max(args.workers)} workers ...", flush=True)
        run_once(program, author, workers=max(args.workers), trials=max(args.workers) + 2, seed=1000)
        # Within a round every worker count runs the same seed (same candidates, same prior configurations),
        # each against a cold cache; rounds differ in seed.
        plan = [(round_, count) for round_ in range(1, args.rounds + 1) for count in args.workers]
        for index, (round_, count) in enumerate(plan, start=1):
            endpoint = fresh_endpoint(index)
            if endpoint != program.lm_config:
                program = update_program(program, actor=author, lm_config=endpoint, reason="benchmark: cold cache")
            load = os.getloadavg()[0]
            result = run_once(program, author, workers=count, trials=args.trials, seed=round_)
            result.update(load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        pool.stop()
        for server in servers:
            server.stop()
        from django.db import connections

        connections.close_all()
        drop_database(args.pg, database)
    report = {"model": args.model, "latency_seconds": args.latency if args.model == "fake" else None,
              "sizes": dict(zip(("train", "val", "test"), args.sizes)),
              "trials_per_run": args.trials, "cpus": os.cpu_count(), "machine": platform.platform(),
              "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n| workers | trials | search s | trials/min | run wall s | load avg |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['trials']} | {r['search_seconds']} | {r['trials_per_minute']} | "
              f"{r['run_wall_seconds']} | {r['load_before']} -> {r['load_after']} |")


if __name__ == "__main__":
    main()
