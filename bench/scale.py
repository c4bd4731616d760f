"""Scale benchmark (issue 15): portal pages and API list endpoints at years of history.

Builds a database with USERS users, PROGRAMS programs, VERSIONS versions and CHANGE_REQUESTS change requests
through the real actions (each writes its rows, history and sealed audit event as production does), then tops the
audit trail up to EVENTS events with a bulk path that builds every event exactly as `governance.audit.record_event`
does (same content, `compute_hash` chaining, `seal`) and proves it by verifying the chain over the joint; a signed
checkpoint closes it, as celery beat would. Then it measures the server time (Django's handler, in process, with
the test client) of every portal page and list endpoint, REPEAT times each, and writes p50/p95 per page.

    python bench/scale.py --database sqlite                  # a fresh SQLite file under a temp dir
    python bench/scale.py --database postgresql              # a fresh database on 127.0.0.1:5432
    python bench/scale.py --report                           # docs/benchmarks.md "Scale" from the results

Evaluations requested by the change requests stay queued (the benchmark measures pages, not the LM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "governance_scale"
AUDIT_KEY = "5c" * 32
SECTION_START, SECTION_END = "<!-- scale:start -->", "<!-- scale:end -->"


def configure(database: str, workdir: Path, *, fresh: bool) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="governance.settings", LITELLM_LOCAL_MODEL_COST_MAP="True",
        GOVERNANCE_VAR_DIR=str(workdir), GOVERNANCE_AUDIT_KEY=AUDIT_KEY, GOVERNANCE_AUDIT_CHECKPOINT_EVERY="0",
        GOVERNANCE_AUDIT_ANCHOR_PATH=str(workdir / "anchor.jsonl"), CELERY_BROKER_URL="",
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    if fresh:  # a new build: new keys and anchor with the new chain
        for name in ("signing_key.pem", "anchor.jsonl", "world.json"):
            (workdir / name).unlink(missing_ok=True)
    if database == "postgresql" and fresh:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {PG_DATABASE}")
    if database == "postgresql":
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DATABASE}"
    else:
        if fresh:
            (workdir / "scale.sqlite3").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'scale.sqlite3'}"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # 100 users, not 100 x 1 s
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def keep_evaluations_queued() -> None:
    from governance import signals

    signals.evaluation_requested.receivers = []
    signals.evaluation_requested.sender_receivers_cache.clear()


# --- building the history --------------------------------------------------------------------------------------


def build(sizes: dict[str, int]) -> dict[str, Any]:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("generate_signing_key", stdout=open(os.devnull, "w"))  # checkpoints are signed with it
    keep_evaluations_queued()
    started = time.perf_counter()
    world = build_through_actions(sizes)
    world["actions_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    world["bulk_events"] = top_up_events(sizes["events"], world)
    world["bulk_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    from governance.audit import write_checkpoint

    from governance.models import AuditEvent

    checkpoint = write_checkpoint(origin="bench")  # verifies the whole chain first: the bulk events' hashes too
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    if checkpoint is None or checkpoint.last_event_id != last_id:
        raise SystemExit(f"the checkpoint does not cover the chain ({checkpoint}): the bulk path is wrong")
    world["checkpoint_seconds"] = round(time.perf_counter() - started, 1)
    world["sizes"] = sizes
    return world


def build_through_actions(sizes: dict[str, int]) -> dict[str, Any]:
    from governance import actions
    from tests.governance.conftest import INLINE_SPEC

    actions.setup_role_groups()
    roles = ["author", "reviewer", "reviewer", "releaser", "auditor"]
    users = [actions.create_user_with_roles(actor=None, username=f"user{i:03d}", password=f"user{i:03d}-Secret-42",
                                            roles=[roles[i % len(roles)]]) for i in range(sizes["users"])]
    admin = actions.create_user_with_roles(actor=None, username="admin", password="admin-Secret-42", roles=["admin"])
    authors = [u for i, u in enumerate(users) if roles[i % len(roles)] == "author"]
    members = [u for i, u in enumerate(users) if roles[i % len(roles)] in ("reviewer", "releaser")]
    rows = [{"ticket": f"ticket {i}: my order {i} did not arrive", "category": "shipping"} for i in range(20)]
    programs, crs = [], []
    versions_each = max(1, sizes["versions"] // sizes["programs"])
    crs_each = max(0, sizes["change_requests"] // sizes["programs"])
    for p in range(sizes["programs"]):
        author = authors[p % len(authors)]
        program = actions.create_program(actor=author, slug=f"program-{p:03d}", name=f"Program {p}", spec=INLINE_SPEC,
                                         members=random.Random(p).sample(members, 6))
        actions.import_dataset(program, actor=author, split="test", name="test", rows=rows)
        base = actions.initial_payload(program)
        for v in range(versions_each):
            payload = json.loads(json.dumps(base))
            payload["program"]["predictors"][0]["signature"]["instructions"] = f"Classify the ticket ({v})."
            version = actions.create_version(program, actor=author, payload=payload, note=f"variant {v}")
            if v < crs_each:
                crs.append(actions.open_change_request(version, actor=author, title=f"Variant {v}", impact="low"))
        programs.append(program)
        if p % 20 == 0:
            print(f"  {p + 1}/{sizes['programs']} programs", file=sys.stderr, flush=True)
    return {"users": [u.username for u in users], "admin": admin.username,
            "programs": [p.slug for p in programs], "change_requests": [cr.pk for cr in crs]}


BULK_ACTIONS = ["version.created", "review.approved", "dataset.imported", "release.moved", "api_key.used",
                "evaluation.succeeded", "change_request.opened", "user.logged_in"]


def top_up_events(total: int, world: dict[str, Any], batch: int = 5000) -> int:
    """Append events up to `total` exactly as record_event builds them (content, hash chain, seal)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from governance.audit import audit_key, compute_hash, event_content, printed_name, seal
    from governance.models import AuditEvent, Program

    missing = total - AuditEvent.objects.count()
    if missing <= 0:
        return 0
    key = audit_key()
    users = list(get_user_model().objects.all())
    program_ids = list(Program.objects.values_list("id", flat=True))
    last = AuditEvent.objects.order_by("-id").first()
    previous, moment = last.hash, last.created_at
    rng = random.Random(0)
    written = 0
    while written < missing:
        events = []
        for _ in range(min(batch, missing - written)):
            actor, action = rng.choice(users), rng.choice(BULK_ACTIONS)
            moment += timedelta(milliseconds=rng.randint(1, 30_000))
            event = AuditEvent(created_at=moment, actor=actor, actor_name=printed_name(actor), action=action,
                               object_type="PromptVersion", object_id=str(rng.randint(1, 10_000)),
                               program_id=rng.choice(program_ids), before=None,
                               after={"status": "approved", "number": rng.randint(1, 50)}, reason="",
                               ip_address="10.0.0.7", request_id=f"{rng.getrandbits(64):016x}", prev_hash=previous)
            event.hash = compute_hash(previous, event_content(event))
            event.seal, event.seal_key_id = seal(key, event.hash), key.key_id
            previous = event.hash
            events.append(event)
        with transaction.atomic():
            AuditEvent.objects.bulk_create(events, batch_size=1000)
        written += len(events)
        if written % 100_000 < batch:
            print(f"  {written}/{missing} bulk events", file=sys.stderr, flush=True)
    return written


# --- measuring ---------------------------------------------------------------------------------------------------


def targets(world: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, user, url) of every portal page and list endpoint measured."""
    from governance.models import PromptVersion

    slug, cr = world["programs"][len(world["programs"]) // 2], world["change_requests"][len(world["change_requests"]) // 2]
    version = PromptVersion.objects.filter(program__slug=slug).order_by("-number").first()
    reviewer, admin = world["users"][1], world["admin"]
    pages = [
        ("page: dashboard", reviewer, "/"), ("page: programs", admin, "/programs/"),
        ("page: program", admin, f"/programs/{slug}/"),
        ("page: version", admin, f"/programs/{slug}/versions/{version.number}/"),
        ("page: change request", admin, f"/change-requests/{cr}/"),
        ("page: releases", admin, f"/programs/{slug}/releases/"),
        ("page: audit (all)", admin, "/audit/"), ("page: audit (program)", admin, f"/programs/{slug}/audit/"),
        ("page: audit (action filter)", admin, "/audit/?action=review.approved"),
        ("page: accounts", admin, "/accounts/"), ("page: notifications", reviewer, "/notifications/"),
    ]
    endpoints = ["programs", "datasets", "versions", "runs", "trials", "evaluations", "change-requests", "reviews",
                 "releases", "labels", "exports", "audit-events", "users", "comments", "notifications"]
    api = [(f"api: /{name}/", admin, f"/api/v1/{name}/") for name in endpoints]
    api.append(("api: /audit-events/?program=", admin, f"/api/v1/audit-events/?program={slug}"))
    return pages + api


def measure(world: dict[str, Any], repeat: int) -> list[dict[str, Any]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    with connection.cursor() as cursor:  # fresh statistics, as autovacuum/ANALYZE keep them in production
        cursor.execute("ANALYZE")

    User = get_user_model()
    rows = []
    for name, username, url in targets(world):
        client = Client()
        client.force_login(User.objects.get(username=username))
        status = client.get(url).status_code  # warm: the first request also fills per-process caches
        seconds = []
        queries: list[str] = []
        with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
            started = time.perf_counter()
            client.get(url)
            seconds.append(time.perf_counter() - started)
        for _ in range(repeat - 1):
            started = time.perf_counter()
            client.get(url)
            seconds.append(time.perf_counter() - started)
        seconds.sort()
        rows.append({"name": name, "url": url, "status": status, "queries": len(queries),
                     "p50_ms": round(1000 * statistics.median(seconds), 1),
                     "p95_ms": round(1000 * seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))], 1)})
        print(f"  {name:34s} {rows[-1]['p50_ms']:8.1f} {rows[-1]['p95_ms']:8.1f} ms  q={len(queries)} "
              f"status={status}", file=sys.stderr, flush=True)
    return rows


# --- report ------------------------------------------------------------------------------------------------------


def report() -> None:
    results = {db: json.loads((RESULTS / f"scale_{db}.json").read_text())
               for db in ("sqlite", "postgresql") if (RESULTS / f"scale_{db}.json").exists()}
    if not results:
        raise SystemExit("no results: run bench/scale.py --database sqlite|postgresql first")
    first = next(iter(results.values()))
    names = [row["name"] for row in first["rows"]]
    header = "| page or endpoint | " + " | ".join(f"{db} p50 ms | {db} p95 ms | queries" for db in results) + " |"
    lines = [SECTION_START, "## Scale: pages and list endpoints at years of history", "",
             "Measured by `bench/scale.py` (server time of Django's handler in process, warm, "
             f"{first['repeat']} requests each; a page over 200 ms at p95 is a miss). Sizes: "
             + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in first["sizes"].items()) + ".", "",
             header, "|---|" + "---|---|---|" * len(results)]
    for name in names:
        cells = []
        for result in results.values():
            row = next((r for r in result["rows"] if r["name"] == name), None)
            cells += [f"{row['p50_ms']}", _flag(row["p95_ms"]), str(row["queries"])] if row else ["", "", ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {db}: built through the actions in {r['world']['actions_seconds']} s, bulk events in "
                     f"{r['world']['bulk_seconds']} s, checkpoint (full chain walk) in "
                     f"{r['world']['checkpoint_seconds']} s; commit {r['commit']}"
                     + (f"; 1-minute load average {r['load_average'][0]} before and {r['load_average'][1]} after "
                        "measuring" if "load_average" in r else "") + "." for db, r in results.items()]
    lines.append(SECTION_END)
    text = DOCS.read_text()
    section = "\n".join(lines)
    if SECTION_START in text:
        text = text[:text.index(SECTION_START)] + section + text[text.index(SECTION_END) + len(SECTION_END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)


def _flag(p95: float) -> str:
    return f"**{p95}**" if p95 > 200 else f"{p95}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--change-requests", type=int, default=2_000)
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--report", action="store_true", help="only rewrite the docs section from the results")
    parser.add_argument("--workdir", help="where the database (SQLite) and the built world's description are kept "
                                          "(default: <tmp>/governance-scale-<database>)")
    parser.add_argument("--measure-only", action="store_true",
                        help="measure the database an earlier run built in --workdir (no rebuild)")
    parser.add_argument("--results-dir", default=str(RESULTS),
                        help="where scale_<database>.json goes (default: bench/results); the docs section is "
                             "rewritten only from the default, so a trial build elsewhere leaves both alone")
    args = parser.parse_args()
    if args.report:
        return report()
    if not args.database:
        parser.error("--database is required unless --report")
    sizes = {"events": args.events, "versions": args.versions, "change_requests": args.change_requests,
             "programs": args.programs, "users": args.users}
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / f"governance-scale-{args.database}")
    workdir.mkdir(parents=True, exist_ok=True)
    built = workdir / "world.json"
    configure(args.database, workdir, fresh=not args.measure_only)
    if args.measure_only:
        world = json.loads(built.read_text())
    else:
        world = build(sizes)
        built.write_text(json.dumps(world))
    load_before = os.getloadavg()[0]  # other work on the machine (a llama.cpp benchmark) shows in p95
    rows = measure(world, args.repeat)
    load = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    commit = os.popen(f"git -C {ROOT} rev-parse --short HEAD").read().strip()
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / f"scale_{args.database}.json"
    out.write_text(json.dumps({"sizes": world.get("sizes", sizes), "repeat": args.repeat, "commit": commit,
                               "load_average": load, "world": world, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    if results_dir.resolve() == RESULTS.resolve():
        report()


if __name__ == "__main__":
    main()
