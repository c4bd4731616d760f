"""Optimization runs through real Celery workers, a real broker and PostgreSQL (run by tests/test_postgresql.py).

Workers are `celery -A governance worker` subprocesses pointed at this session's test database; the fake LM
server runs in this process and answers them over loopback HTTP. Tests commit (transaction=True), since the
workers can only see committed rows. The system evaluations a change request waits for run on the workers too
(task governance.tasks.run_evaluation); a run's final evaluations run inside the run, on its worker. Workers
inherit the audit key from this process's environment (tests/conftest.py). A missing Redis or RabbitMQ fails
the tests: the scale path is never skipped silently.
"""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from governance import runner, schedules, studies
from governance.actions import (
    approve_change_request,
    create_program,
    create_version,
    import_dataset,
    open_change_request,
    start_run,
)
from governance.errors import IllegalTransition
from governance.models import (
    AuditEvent,
    ChangeRequest,
    Evaluation,
    OptimizationRun,
    PromptVersion,
    RunStatus,
    Trial,
)
from tests.governance.conftest import USERS, WINNING_INSTRUCTIONS, password, payload_with, seen
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import DEMO_DIR, NearTies, load_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
QUEUE = f"governance-test-{uuid.uuid4().hex[:10]}"  # this session's own queue on the shared brokers
FAKE_MODEL = "text-completion-openai/fake"
STALE_SECONDS = 6


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return True
    except OSError:
        return False


class SlowClassifier(NearTies):
    """The simulated model, slowed down so that a test can act while a run is in the middle of its search. Its
    configurations tie below 100%, so every trial keeps calling the model (a perfect score would end the
    spending at once) and, with the patience off, a run does all its trials."""

    delay = 0.0

    def __call__(self, prompt: str, request: dict[str, Any]) -> str:
        time.sleep(self.delay)
        return super().__call__(prompt, request)


class Worker:
    """One `celery -A governance worker` process (solo pool: one task at a time, like one core's worth)."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, broker: str = REDIS_URL,
                 queue: str = QUEUE) -> None:
        self.name = name
        self.log = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-m", "celery", "-A", "governance", "worker", "--pool=solo", "-Q", queue,
                   "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env={**env, "CELERY_BROKER_URL": broker},
                                            stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log.read_bytes():
                return self
            assert self.process.poll() is None, f"worker {self.name} exited:\n{self.text()}"
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready after {timeout}s:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for the task in hand
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def brokers() -> Iterator[None]:
    """Both brokers must be up; this process's Celery app publishes to Redis on this session's queue."""
    assert _listening(6379), "Redis is not listening on 127.0.0.1:6379"
    assert _listening(5672), "RabbitMQ is not listening on 127.0.0.1:5672"
    from governance.celery import app

    saved = {key: app.conf[key] for key in ("broker_url", "task_default_queue", "task_always_eager")}
    app.conf.update(broker_url=REDIS_URL, task_default_queue=QUEUE, task_always_eager=False)
    yield
    app.conf.update(saved)
    import redis

    redis.Redis.from_url(REDIS_URL).delete(QUEUE)


@pytest.fixture(scope="module")
def lm_server() -> Iterator[FakeLMServer]:
    with FakeLMServer(SlowClassifier(min_demos=14)) as server:
        yield server


@pytest.fixture(autouse=True)
def through_the_broker(settings, monkeypatch):
    settings.CELERY_BROKER_URL = REDIS_URL  # dispatch_run, dispatch_evaluation: publish instead of the local pool
    settings.GOVERNANCE_LM_CACHE_PATH = "/nonexistent/not-used-here"  # this process never calls the model
    monkeypatch.setattr(SlowClassifier, "delay", 0.0)


def database_url() -> str:
    """This session's test database (the child pytest's `test_<name>`), as the workers must see it."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def worker_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workers")


def worker_env(directory: Path, cache: str = "shared") -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url(), "GOVERNANCE_VAR_DIR": str(directory),
            "GOVERNANCE_LM_CACHE_PATH": str(directory / f"lm_cache_{cache}.sqlite3"), "GOVERNANCE_LM_API_KEY": "x",
            "GOVERNANCE_RUN_HEARTBEAT_SECONDS": "1", "GOVERNANCE_RUN_STALE_SECONDS": str(STALE_SECONDS),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DJANGO_SETTINGS_MODULE": "governance.settings",
            "GOVERNANCE_AUDIT_KEY": os.environ["GOVERNANCE_AUDIT_KEY"],  # every audited write is sealed with it
            "DB_CONN_MAX_AGE": "0", "LOG_LEVEL": "INFO", "GOVERNANCE_RUN_PATIENCE": "0"}


@pytest.fixture(autouse=True)
def shared_workers_idle_before_the_flush(request, db) -> Iterator[None]:
    """The module's two workers outlive each test: a job a test's actions published (a change request's
    evaluations, notifications) may still run when pytest-django empties the database, and its transaction
    against the flush's TRUNCATE can deadlock the flush. Set up after `db`, so this waits before the flush."""
    yield
    if "redis_workers" in request.fixturenames:
        wait_until_idle(request.getfixturevalue("redis_workers"))


_RECEIVED = re.compile(r"Task \S+\[([0-9a-f-]+)\] received")
_ENDED = re.compile(r"Task \S+\[([0-9a-f-]+)\] (?:succeeded|raised|failed|retry)")


def wait_until_idle(workers: list[Worker], timeout: float = 120) -> None:
    """Until every task each worker received has ended, twice a second apart (a job published as the last
    one ended reaches a worker within that)."""
    def idle() -> bool:
        for worker in workers:
            text = worker.log.read_text(errors="replace")
            if set(_RECEIVED.findall(text)) - set(_ENDED.findall(text)):
                return False
        return True

    deadline, calm = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and calm < 2:
        calm = calm + 1 if idle() else 0
        time.sleep(1.0)
    assert calm >= 2, "the shared workers were still busy after the test:\n" + "\n".join(
        f"--- {w.name}\n{w.text()}" for w in workers)


@pytest.fixture(scope="module")
def redis_workers(django_db_blocker, worker_dir) -> Iterator[list[Worker]]:
    """Two workers shared by the tests that do not kill anything (their start-up costs seconds)."""
    with django_db_blocker.unblock():
        env = worker_env(worker_dir)
    workers = [Worker(f"w{i}", env, worker_dir) for i in (1, 2)]
    try:
        yield [w.wait_ready() for w in workers]
    finally:
        for w in workers:
            w.stop()


@pytest.fixture
def team(db) -> dict[str, Any]:
    from governance.actions import create_user_with_roles, setup_role_groups

    setup_role_groups()
    return {name: create_user_with_roles(actor=None, username=name, password=f"{name}-secret-pass", roles=roles,
                                         first_name=name.capitalize(), last_name="Example")
            for name, roles in USERS.items()}


def make_program(team: dict[str, Any], server: FakeLMServer, slug: str = "tickets"):
    program = create_program(actor=team["author"], slug=slug, name="Ticket triage",
                             spec=json.loads((DEMO_DIR / "program.json").read_text()), metric="choice",
                             lm_config={"model": FAKE_MODEL, "api_base": server.url},
                             members=[team[n] for n in ("author2", "reviewer1", "reviewer2", "releaser")])
    for split, n in (("train", 70), ("val", 20), ("test", 20)):
        import_dataset(program, actor=team["author"], split=split, name=f"{split} slice", rows=load_rows(split)[:n])
    return program


def wait_for(condition: Callable[[], Any], timeout: float, what: str, workers: list[Worker] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {w.name}\n{w.text()}" for w in workers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def finished(run: OptimizationRun) -> OptimizationRun | None:
    run.refresh_from_db()
    return run if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) else None


def assert_proposed_once(run: OptimizationRun) -> ChangeRequest:
    assert run.status == RunStatus.SUCCEEDED, run.error
    numbers = list(run.trials.values_list("number", "kind"))
    assert len(numbers) == len(set(numbers)) and numbers, "each trial recorded once"
    version = PromptVersion.objects.get(run=run)
    assert version.origin == "optimizer" and version.status == "in_review" and set(version.scores) == {"test"}
    cr = ChangeRequest.objects.get(version=version, status="open")
    # The run evaluated candidate and production itself, on its worker and inside its budget; the change request
    # reuses those evaluations (same content, data and model) instead of asking a worker again.
    candidate, baseline = cr.candidate_evaluation, cr.baseline_evaluation
    assert candidate.status == baseline.status == "succeeded" and candidate.run == baseline.run == run
    assert candidate.worker == baseline.worker == f"run-{run.pk}"
    assert candidate.content_hash == version.content_hash and version.scores["test"] == candidate.score
    assert candidate.examples == baseline.examples == candidate.results.count() == 20
    assert cr.comparison["candidate_evaluation"] == candidate.pk and cr.evaluation["run"]["id"] == run.pk
    assert Evaluation.objects.filter(run=run).count() == 2, "each version evaluated once"
    return cr


# --- tests ------------------------------------------------------------------------------------------------------


def test_workers_use_the_app_database_for_the_study():
    assert connection.vendor == "postgresql"
    url = studies.optuna_storage_url()
    assert url.startswith("postgresql+psycopg://") and url.endswith(f"/{connection.settings_dict['NAME']}")


def test_a_run_completes_through_redis_and_a_worker(team, lm_server, redis_workers):
    program = make_program(team, lm_server)
    run = start_run(program, actor=team["author"], num_trials=4)
    wait_for(lambda: finished(run), 180, "the run to finish", redis_workers)
    cr = assert_proposed_once(run)
    assert run.worker.split(":")[1] in {"w1@" + socket.gethostname(), "w2@" + socket.gethostname()}
    assert cr.opened_by == team["author"] and cr.candidate_evaluation.score >= 0.8 and cr.recommended
    assert cr.baseline_evaluation.score < cr.candidate_evaluation.score and cr.comparison["significant_gain"]
    actions = list(AuditEvent.objects.filter(object_type="OptimizationRun").values_list("action", flat=True))
    assert actions == ["run.started", "run.executing", "run.succeeded"]


def test_two_runs_execute_in_parallel_on_two_workers(team, lm_server, redis_workers):
    lm_server.responder.delay = 0.05
    runs = [start_run(make_program(team, lm_server, slug=f"p{seed}"), actor=team["author"], seed=seed, num_trials=4)
            for seed in (1, 2)]
    wait_for(lambda: all(finished(r) for r in runs), 240, "both runs to finish", redis_workers)
    for run in runs:
        assert_proposed_once(run)
    assert runs[0].worker.split(":")[1] != runs[1].worker.split(":")[1], "one run per worker"
    first, second = sorted(runs, key=lambda r: r.started_at)
    assert second.started_at < first.finished_at, "the runs overlapped in time"


def test_trials_of_one_run_spread_over_two_workers(team, lm_server, redis_workers):
    lm_server.responder.delay = 0.1
    program = make_program(team, lm_server)
    run = start_run(program, actor=team["author"], seed=3, num_trials=10)
    assert runner.spread_run(run.pk, workers=2) == 1
    wait_for(lambda: finished(run), 300, "the spread run to finish", redis_workers)
    assert_proposed_once(run)
    workers = run.progress["workers"]
    assert len(workers) == 2 and all(count >= 1 for count in workers.values()), workers
    assert run.trials.count() >= 10
    assert len({w.split(":")[1] for w in workers}) == 2, "owner and helper ran on different workers"


def test_a_change_requests_evaluations_run_on_the_workers(team, lm_server, redis_workers):
    program = make_program(team, lm_server)
    version = create_version(program, actor=team["author"], payload=payload_with(program, WINNING_INSTRUCTIONS))
    with transaction.atomic():  # the jobs are published when this commits: until then nothing can run them
        cr = open_change_request(version, actor=team["author"], title="Name the categories")
        evaluations = [cr.candidate_evaluation, cr.baseline_evaluation]
        assert all(e.status == "queued" for e in evaluations)
        with pytest.raises(IllegalTransition, match=r"^the evaluation of the candidate \(evaluation \d+\) is queued "):
            approve_change_request(cr, actor=team["reviewer1"], password=password(team["reviewer1"]),
                                   content_hash=seen(cr))

    def done() -> bool:
        for evaluation in evaluations:
            evaluation.refresh_from_db()
        return all(e.is_finished for e in evaluations)

    wait_for(done, 180, "both evaluations to finish on the workers", redis_workers)
    nodes = {f"{name}@{socket.gethostname()}" for name in ("w1", "w2")}
    for evaluation in evaluations:
        assert evaluation.status == "succeeded", evaluation.error
        assert evaluation.worker.startswith("evaluation:") and evaluation.worker.split(":")[1] in nodes
        assert evaluation.examples_done == evaluation.results.count() == 20
        assert evaluation.calls + evaluation.cached_calls >= 20, "the worker asked the model (or its cache)"
    assert evaluations[0].calls > 0, "new content reached the fake model over loopback HTTP"
    cr.refresh_from_db()
    assert cr.candidate_evaluation.score >= 0.8 > cr.baseline_evaluation.score  # NearTies: a fifth always wrong
    assert cr.comparison["significant_gain"] and cr.recommended, "the worker recorded the paired comparison"
    started = AuditEvent.objects.filter(action="evaluation.started", actor__isnull=True)
    assert sorted(e.after["worker"] for e in started) == sorted(e.worker for e in evaluations)
    for reviewer in (team["reviewer1"], team["reviewer2"]):
        approve_change_request(cr, actor=reviewer, password=password(reviewer), content_hash=seen(cr))
    version.refresh_from_db()
    assert version.status == "approved"


@pytest.fixture
def own_queue() -> Iterator[str]:
    """A queue only this test's workers consume (the module's shared workers keep listening on QUEUE)."""
    from governance.celery import app

    queue = f"{QUEUE}-{uuid.uuid4().hex[:6]}"
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = QUEUE
    import redis

    redis.Redis.from_url(REDIS_URL).delete(queue)


def test_a_killed_worker_is_replaced_and_the_run_resumes_its_study(team, lm_server, worker_dir, own_queue):
    lm_server.responder.delay = 0.15
    env = worker_env(worker_dir, cache="kill")  # a cold cache: every trial costs real (slow) calls
    first = Worker("doomed", env, worker_dir, queue=own_queue).wait_ready()
    program = make_program(team, lm_server)
    run = start_run(program, actor=team["author"], seed=4, num_trials=8)
    try:
        wait_for(lambda: Trial.objects.filter(run=run).exists(), 240, "a first trial", [first])
        first.kill()
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING, f"the kill landed too late: {run.status}"
        assert ":doomed@" in run.worker, run.worker
        before = set(run.trials.values_list("number", flat=True))
        assert not PromptVersion.objects.filter(run=run).exists(), "nothing half-written"

        second = Worker("replacement", env, worker_dir, queue=own_queue).wait_ready()
        try:
            time.sleep(STALE_SECONDS + 1)  # the dead worker's heartbeat goes stale
            assert schedules.recover_stale_runs(stale_after=STALE_SECONDS) == {run.pk: "queued"}
            wait_for(lambda: finished(run), 240, "the resumed run to finish", [first, second])
        finally:
            second.stop()
    finally:
        first.stop()
    assert_proposed_once(run)
    assert run.attempts == 2 and "replacement" in run.worker
    after = set(run.trials.values_list("number", flat=True))
    assert before < after, "the trials done before the kill are kept and the study continued"
    actions = list(AuditEvent.objects.filter(object_type="OptimizationRun").values_list("action", flat=True))
    assert actions == ["run.started", "run.executing", "run.requeued", "run.resumed", "run.succeeded"]


def test_a_run_completes_through_rabbitmq(team, lm_server, worker_dir, settings):
    from celery import Celery

    worker = Worker("rabbit", worker_env(worker_dir), worker_dir, broker=AMQP_URL).wait_ready()  # QUEUE on RabbitMQ
    try:
        program = make_program(team, lm_server)
        run = start_run(program, actor=team["author"], num_trials=4, enqueue=False)
        with Celery("publisher", broker=AMQP_URL) as publisher:
            publisher.send_task("governance.tasks.run_optimization", args=[run.pk], queue=QUEUE)
        wait_for(lambda: finished(run), 180, "the run to finish", [worker])
    finally:
        worker.stop()
    assert_proposed_once(run)
    assert "rabbit@" in run.worker
