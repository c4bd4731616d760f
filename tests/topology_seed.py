"""Seeds a running production topology for its smoke test (tests/test_topology.py), through the real actions.

Run as `python -m tests.topology_seed LM_URL` with the topology's environment (DATABASE_URL, CELERY_BROKER_URL,
keys): it creates the demo users and the support-ticket program on the given fake LM, opens the baseline's change
request, waits until the topology's Celery worker has evaluated it (the evaluation is announced on commit and
goes through the broker like every production job), approves it twice and releases it, then prints JSON with
what the test needs (change request id, program slug, the releaser's API key).
"""

from __future__ import annotations

import json
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
django.setup()

from governance.actions import (  # noqa: E402  (after django.setup)
    approve_change_request,
    create_api_key,
    create_program,
    create_user_with_roles,
    create_version,
    import_dataset,
    initial_payload,
    open_change_request,
    release_version,
    setup_role_groups,
)
from governance.models import ChangeRequest, EvaluationStatus  # noqa: E402
from tests.optimizer.simulated import DEMO_DIR, load_rows  # noqa: E402

USERS = {"author": ["author"], "reviewer1": ["reviewer"], "reviewer2": ["reviewer"], "releaser": ["releaser"]}
EVALUATION_TIMEOUT = 180.0


def password(username: str) -> str:
    return f"{username}-Secret-42"


def seed(lm_url: str) -> dict[str, object]:
    setup_role_groups()
    users = {name: create_user_with_roles(actor=None, username=name, password=password(name), roles=roles)
             for name, roles in USERS.items()}
    program = create_program(
        actor=users["author"], slug="support-triage", name="Support ticket triage",
        spec=json.loads((DEMO_DIR / "program.json").read_text()), metric="choice",
        lm_config={"model": "text-completion-openai/fake", "api_base": lm_url},
        members=[users["reviewer1"], users["reviewer2"], users["releaser"]])
    for split, size in {"train": 20, "val": 10, "test": 10}.items():
        import_dataset(program, actor=users["author"], split=split, name=split, rows=load_rows(split)[:size])
    version = create_version(program, actor=users["author"], payload=initial_payload(program), note="Baseline.")
    cr = open_change_request(version, actor=users["author"], title="Baseline", impact="low")
    wait_for_evaluations(cr)
    for name in ("reviewer1", "reviewer2"):
        cr.refresh_from_db()
        approve_change_request(cr, actor=users[name], password=password(name), content_hash=version.content_hash)
    version.refresh_from_db()
    release_version(version, actor=users["releaser"], reason="Smoke test release.")
    _, key = create_api_key(users["releaser"], actor=users["releaser"], name="smoke",
                            password=password("releaser"), programs=[program], bundle_only=True)
    return {"change_request": cr.pk, "program": program.slug, "api_key": key,
            "password": password("reviewer1"), "content_hash": version.content_hash}


def wait_for_evaluations(cr: ChangeRequest) -> None:
    """The candidate's evaluation is executed by the topology's worker, not by this process."""
    deadline = time.monotonic() + EVALUATION_TIMEOUT
    while True:
        cr.refresh_from_db()
        evaluations = [e for e in (cr.candidate_evaluation, cr.baseline_evaluation) if e is not None]
        if evaluations and all(e.status == EvaluationStatus.SUCCEEDED for e in evaluations):
            return
        failed = [e for e in evaluations if e.status == EvaluationStatus.FAILED]
        if failed:
            raise SystemExit(f"the worker's evaluation failed: {failed[0].error}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no evaluation by the worker within {EVALUATION_TIMEOUT:.0f}s")
        time.sleep(0.5)


if __name__ == "__main__":
    print(json.dumps(seed(sys.argv[1])))
