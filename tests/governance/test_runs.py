"""Optimization runs in the embedded mode (SQLite, no broker): the real optimizer against the loopback fake LM
server answering like a small model (tests/optimizer/simulated.py), driven through the real actions.

One fake server and one LM response cache serve the whole module, so runs with the same seed and data replay
the first run's answers; tests that need real model calls (budget, failures) use their own cache or server.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from governance import runner, schedules, studies
from governance.evaluator import run_drift_check
from governance.actions import (
    approve_change_request,
    cancel_run,
    create_program,
    create_version,
    import_dataset,
    initial_payload,
    open_change_request,
    start_run,
    update_program,
)
from governance.actions.releases import release_version
from governance.actions.reviews import allowed_review_actions, recommendation_text
from governance.actions.runs import claim_run, finish_run
from governance.errors import IllegalTransition, InvalidInput, PermissionDenied
from governance.models import (
    AuditEvent,
    Candidate,
    ChangeRequest,
    DriftAlert,
    OptimizationRun,
    PromptVersion,
    RunStatus,
    VersionOrigin,
)
from tests.governance.conftest import AuditLog, evaluate, password
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import DEMO_DIR, NearTies, SimulatedClassifier, load_rows, with_judge

FAKE_MODEL = "text-completion-openai/fake"
SIZES = {"train": 70, "val": 20, "test": 20}  # small slices: a cold run costs about 110 model calls


@pytest.fixture(scope="module")
def lm_server():
    with FakeLMServer(SimulatedClassifier(min_demos=14)) as server:
        yield server


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs") / "lm_cache.sqlite3"


@pytest.fixture(autouse=True)
def run_settings(settings, tmp_path, shared_cache, monkeypatch):
    settings.GOVERNANCE_LM_CACHE_PATH = str(shared_cache)
    settings.GOVERNANCE_OPTUNA_STORAGE = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    settings.GOVERNANCE_RUN_HEARTBEAT_SECONDS = 3600  # per-trial heartbeats only: no concurrent SQLite writer
    settings.CELERY_BROKER_URL = ""
    monkeypatch.setenv("GOVERNANCE_LM_API_KEY", "x")
    return settings


def rows(split: str, n: int | None = None, start: int = 0) -> list[dict[str, Any]]:
    data = load_rows(split)
    return data[start:start + (n or SIZES[split])]


def make_program(users, server: FakeLMServer, *, slug: str = "tickets", splits=("train", "val", "test")):
    members = [users[name] for name in ("author2", "reviewer1", "reviewer2", "releaser")]
    program = create_program(actor=users["author"], slug=slug, name="Ticket triage",
                             spec=json.loads((DEMO_DIR / "program.json").read_text()), metric="choice",
                             lm_config={"model": FAKE_MODEL, "api_base": server.url}, members=members)
    for split in splits:
        import_dataset(program, actor=users["author"], split=split, name=f"{split} slice", rows=rows(split))
    return program


@pytest.fixture
def program(users, lm_server):
    return make_program(users, lm_server)


def start(program, actor, **kwargs) -> OptimizationRun:
    return start_run(program, actor=actor, **{"num_trials": 4, **kwargs})


def trial_numbers(run: OptimizationRun) -> list[int]:
    return list(run.trials.order_by("number").values_list("number", flat=True))


# --- the whole flow, embedded ---------------------------------------------------------------------------------


def test_run_executes_in_the_background_and_opens_a_change_request(committed_db, program, users):
    audit = AuditLog()
    began = time.monotonic()
    run = start(program, users["author"])
    assert time.monotonic() - began < 2, "start_run must return before the search (local pool, not eager)"
    assert run.status == RunStatus.QUEUED and run.study_name.startswith("tickets-")
    assert run.config["task_lm"] == {"model": FAKE_MODEL, "api_base": program.lm_config["api_base"]}
    assert set(run.dataset_hashes) == {"train", "val", "test"}

    runner.local_executor().wait(run.pk, timeout=240)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.stop_reason == "completed 4 trials" and run.attempts == 1 and run.worker.startswith("local@")
    assert trial_numbers(run) == [0, 1, 2, 3]
    assert run.progress["trials_done"] == 4 and run.progress["best_score"] == 1.0
    assert run.calls + run.cached_calls > 0 and run.wall_seconds > 0  # cached when other tests ran first
    kinds = set(Candidate.objects.filter(run=run).values_list("kind", flat=True))
    assert kinds == {"instruction", "demo_set"}

    version = PromptVersion.objects.get(run=run)
    assert version.origin == VersionOrigin.OPTIMIZER and version.status == "in_review"
    assert version.created_by == users["author"] and version.parent is None
    assert version.scores == {"test": 1.0}
    assert len(version.payload["program"]["predictors"][0]["demos"]) >= 14
    assert version.payload["lm"] == {"model": FAKE_MODEL, "temperature": 0.0, "max_tokens": 256}

    cr = ChangeRequest.objects.get(version=version)
    assert cr.status == "open" and cr.opened_by == users["author"] and cr.recommended is True
    candidate, production = cr.candidate_evaluation, cr.baseline_evaluation
    assert candidate.status == production.status == "succeeded" and candidate.run == production.run == run
    assert candidate.content_hash == version.content_hash and candidate.score == 1.0 and production.score < 0.5
    assert candidate.examples == production.examples == SIZES["test"] == candidate.results.count()
    assert candidate.dataset_hash == production.dataset_hash == run.dataset_hashes["test"]
    assert cr.comparison["significant_gain"] is True and cr.comparison["p_value"] < 0.001
    assert cr.evaluation["run"]["stop_reason"] == "completed 4 trials"
    assert run.calls + run.cached_calls >= candidate.calls + production.calls, "the final evaluation is in the run"
    assert "approve" not in allowed_review_actions(cr, users["author"]), "the run's starter never approves"

    assert audit.actions() == ["run.started", "run.executing",
                               "evaluation.requested", "evaluation.started", "evaluation.succeeded",
                               "evaluation.requested", "evaluation.started", "evaluation.succeeded",
                               "version.created", "change_request.opened", "version.submitted",
                               "change_request.evaluated", "run.succeeded"]
    finished = audit.events()[-1]
    assert finished.actor is None and finished.after["trials"] == 4 and finished.reason == "completed 4 trials"


def test_a_second_run_on_the_same_data_replays_the_cache_and_compares_with_production(db, program, users):
    """Production set: the run starts from it, compares against it, and is not recommended when it ties."""
    base = runner.execute_run(start(program, users["author"], enqueue=False).pk, worker_name="w1")
    assert base == RunStatus.SUCCEEDED
    first = PromptVersion.objects.get(run__isnull=False)
    cr = first.change_requests.get()
    for reviewer in (users["reviewer1"], users["reviewer2"]):
        approve_change_request(cr, actor=reviewer, password=password(reviewer), content_hash=first.content_hash)
    release_version(first, actor=users["releaser"], reason="ship the optimized prompt")

    run = start(program, users["author2"], enqueue=False)
    assert run.base_version == first
    assert runner.execute_run(run.pk, worker_name="w2") == RunStatus.SUCCEEDED
    second = PromptVersion.objects.get(run=run)
    assert second.parent == first and second.created_by == users["author2"]
    cr2 = second.change_requests.get()
    assert cr2.base_version == first and cr2.recommended is False
    assert cr2.baseline_evaluation.content_hash == first.content_hash and cr2.baseline_evaluation.score == 1.0
    assert cr2.baseline_evaluation == cr.candidate_evaluation, "production's evaluation is reused, not repaid"
    assert cr2.comparison["p_value"] == 1.0 and cr2.comparison["significant_gain"] is False  # a tie
    assert recommendation_text(cr2.comparison).startswith("Not recommended: +0.0 points on 20 test examples")


# --- cancel, budget, failures -----------------------------------------------------------------------------------


def test_cancel_stops_the_search_at_the_next_trial_boundary(db, program, users):
    run = start(program, users["author"], enqueue=False, num_trials=6)
    audit = AuditLog()

    def cancel_after_first(record, outcome):
        if record.number == 0:
            cancel_run(run, actor=users["author2"], reason="wrong dataset")

    status = runner.execute_run(run.pk, worker_name="w", on_trial=cancel_after_first)
    run.refresh_from_db()
    assert status == RunStatus.CANCELLED and run.status == RunStatus.CANCELLED
    assert trial_numbers(run) == [0, 1], "the trial in flight finishes; no new one starts"
    assert run.stop_reason == "cancelled at a trial boundary after 2 trials"
    assert not PromptVersion.objects.filter(run=run).exists()
    assert Candidate.objects.filter(run=run).exists(), "what the run considered stays on record"
    assert audit.actions() == ["run.executing", "run.cancel_requested", "run.cancelled"]
    assert audit.events()[1].actor == users["author2"] and audit.events()[1].reason == "wrong dataset"
    with pytest.raises(IllegalTransition, match=f"^run {run.pk} is cancelled; only queued or running runs can be "
                                                "cancelled$"):
        cancel_run(run, actor=users["author"])


def test_cancelling_a_queued_run_ends_it_at_once_and_the_job_skips_it(db, program, users):
    run = start(program, users["author"], enqueue=False)
    cancel_run(run, actor=users["author"])
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.stop_reason == "cancelled by author before it started"
    assert runner.execute_run(run.pk, worker_name="w") == f"run {run.pk} is already cancelled"
    assert not run.trials.exists()


def test_only_authors_of_the_program_start_and_cancel_runs(db, program, users):
    with pytest.raises(PermissionDenied, match="^user 'reviewer1' needs the author role to start optimization runs on "
                                               "program tickets$"):
        start_run(program, actor=users["reviewer1"])
    with pytest.raises(PermissionDenied, match="^user 'outsider' is not a member of program tickets$"):
        start_run(program, actor=users["outsider"])
    run = start(program, users["author"], enqueue=False)
    with pytest.raises(PermissionDenied, match="^user 'outsider' is not a member of program tickets$"):
        cancel_run(run, actor=users["outsider"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"preset": "huge"}, "^preset must be one of light, medium, heavy, got 'huge'$"),
    ({"seed": -1}, "^seed must be an integer >= 0, got -1$"),
    ({"max_calls": 0}, "^max_calls must be a positive integer, got 0$"),
    ({"lm_config": {"api_key": "sk-1"}}, "^lm_config must not contain api_key"),
])
def test_start_run_validates_its_options(db, program, users, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        start_run(program, actor=users["author"], **kwargs)


def test_a_run_needs_train_data_and_holds_val_out_of_train_when_there_is_none(db, users, lm_server):
    empty = make_program(users, lm_server, slug="empty", splits=())
    with pytest.raises(InvalidInput, match="^program empty has no train dataset; import one before optimizing$"):
        start_run(empty, actor=users["author"])
    no_test = make_program(users, lm_server, slug="no-test", splits=("train", "val"))
    with pytest.raises(IllegalTransition, match="^program no-test has no test dataset; import one so the system can "
                                                "evaluate the change against production"):
        start_run(no_test, actor=users["author"])
    train_only = make_program(users, lm_server, slug="train-only", splits=("train", "test"))
    run = start_run(train_only, actor=users["author"], enqueue=False)
    assert run.config["val_held_out"] is True and run.config["datasets"]["val"] is None
    inputs = runner.load_inputs(run)
    assert len(inputs.valset) == 21 and len(inputs.trainset) == 49 and len(inputs.testset) == 20


def test_budget_cap_bounds_the_whole_run_to_the_call_final_evaluation_included(db, program, users, settings,
                                                                               tmp_path, lm_server, monkeypatch):
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "cold_cache.sqlite3")  # every call is a real one
    monkeypatch.setattr(lm_server, "responder", NearTies(min_demos=14))  # no perfect score: trials keep spending
    sent = len(lm_server.requests)
    run = start(program, users["author"], enqueue=False, num_trials=8, max_calls=120)
    assert runner.execute_run(run.pk, worker_name="w") == RunStatus.SUCCEEDED
    run.refresh_from_db()
    # The final evaluation (candidate and production on 20 test rows: up to 40 calls) is planned up front, so
    # the search gets the other 80 and the whole run stays within 120 calls.
    assert run.stop_reason == "budget exhausted: calls limit 80 reached (used 80)"
    assert 80 < run.calls <= 120 and len(lm_server.requests) - sent == run.calls
    cr = ChangeRequest.objects.get(version__run=run)
    assert cr.evaluation["run"]["stop_reason"] == run.stop_reason
    assert cr.candidate_evaluation.status == cr.baseline_evaluation.status == "succeeded"


@pytest.fixture
def judged(db, users, lm_server, monkeypatch):
    """The ticket program scored by the LM judge, which the fake server also plays."""
    for name, value in (("MODEL", FAKE_MODEL), ("API_BASE", lm_server.url), ("API_KEY", "x")):
        monkeypatch.setenv(f"OPTIMIZER_JUDGE_{name}", value)
    program = make_program(users, lm_server, slug="judged")
    return update_program(program, actor=users["author"], metric="judge")


def test_an_lm_judges_calls_count_against_the_runs_budget_and_spending(db, judged, users, settings, tmp_path,
                                                                      lm_server, monkeypatch):
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "cold_cache.sqlite3")  # every call is a real one
    monkeypatch.setattr(lm_server, "responder", with_judge(NearTies(min_demos=14)))
    sent = len(lm_server.requests)
    run = start(judged, users["author"], enqueue=False, num_trials=8, max_calls=250)
    assert runner.execute_run(run.pk, worker_name="w") == RunStatus.SUCCEEDED, run.error
    run.refresh_from_db()
    verdicts = [r for r in lm_server.requests[sent:] if str(r.get("prompt", "")).rstrip().endswith("Verdict:")]
    # The final evaluation plans for the judge too: candidate and production, 20 test rows, an answer and a
    # verdict each (80 calls); the search and its judge share the other 170.
    assert run.stop_reason == "budget exhausted: calls limit 170 reached (used 170)"
    assert len(verdicts) > 40 and 170 < run.calls <= 250, "the judge's calls are the run's calls"
    assert len(lm_server.requests) - sent == run.calls
    cr = ChangeRequest.objects.get(version__run=run)
    assert cr.candidate_evaluation.status == cr.baseline_evaluation.status == "succeeded"
    assert cr.candidate_evaluation.calls == 2 * SIZES["test"], "an answer and a verdict per test row"
    with pytest.raises(InvalidInput, match="needs up to 80 calls, so max_calls must be more than 80"):
        start(judged, users["author"], enqueue=False, max_calls=80)


def test_a_program_whose_metric_no_longer_loads_cannot_start_a_run(db, program, users):
    from governance.models import Program

    Program.objects.filter(pk=program.pk).update(metric="gone.package:score")  # its package was uninstalled
    program.refresh_from_db()
    with pytest.raises(InvalidInput, match="^program tickets's metric cannot be loaded: metric 'gone.package:score'"
                                          ": cannot import module 'gone.package'") as info:
        start_run(program, actor=users["author"])
    assert info.value.field == "metric" and not OptimizationRun.objects.exists()


@pytest.mark.parametrize("max_calls", [1, 40])
def test_a_call_cap_too_small_for_the_final_evaluation_is_refused_at_start(db, program, users, max_calls):
    with pytest.raises(InvalidInput, match=f"^max_calls={max_calls} cannot cover the run: the final evaluation of "
                                           "the candidate and production on the 20 test examples needs up to 40 "
                                           "calls, so max_calls must be more than 40") as info:
        start_run(program, actor=users["author"], max_calls=max_calls)
    assert info.value.field == "max_calls" and not OptimizationRun.objects.exists()


def test_cancel_during_the_final_evaluation_stops_within_seconds_and_proposes_nothing(
        committed_db, program, users, settings, tmp_path, lm_server, monkeypatch):
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "cold_cache.sqlite3")
    test_tickets = {row["ticket"] for row in rows("test")}
    classifier = SimulatedClassifier(min_demos=14)

    def slow_on_test_rows(prompt, request):
        if any(ticket in prompt.rsplit("Ticket: ", 1)[-1] for ticket in test_tickets):
            time.sleep(0.3)  # the final evaluation's calls are slow; the search's are not
        return classifier(prompt, request)

    monkeypatch.setattr(lm_server, "responder", slow_on_test_rows)
    run = start(program, users["author"])
    progress = _wait_for(lambda: OptimizationRun.objects.get(pk=run.pk).progress, lambda p: p.get("evaluation"))
    assert progress["phase"] == "final evaluation" and progress["evaluation"]["total"] == SIZES["test"]
    assert progress["calls"] > 0 and progress["eta_seconds"] > 0
    cancel_run(run, actor=users["author"], reason="wrong data")
    asked = time.monotonic()
    runner.local_executor().wait(run.pk, timeout=120)
    assert time.monotonic() - asked < 10, "a cancel stops the final evaluation within seconds"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert run.stop_reason.startswith("cancelled during the final evaluation")
    assert not PromptVersion.objects.filter(run=run).exists() and not ChangeRequest.objects.exists()
    # The cancel lands in the candidate's evaluation or, under load, in production's after it: either way one
    # evaluation ends cancelled part-way, without results, and nothing is proposed.
    evaluation = run.evaluations.get(status="cancelled")
    assert evaluation.error.startswith("cancelled")
    assert evaluation.examples_done < SIZES["test"] and not evaluation.results.exists()


def _wait_for(read, ready, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if ready(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout}s: {read()}")


def test_a_model_failure_mid_run_fails_the_run_and_writes_no_version(db, users, settings, tmp_path):
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "cold_cache.sqlite3")
    with FakeLMServer(SimulatedClassifier(min_demos=14)) as server:
        program = make_program(users, server, slug="flaky")
        run = start(program, users["author"], enqueue=False)
        audit = AuditLog()

        def break_the_model(record, outcome):
            server.fail_next(400, 100_000)  # every later request is rejected (not retryable)

        assert runner.execute_run(run.pk, worker_name="w", on_trial=break_the_model) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.stop_reason == "error"
    assert run.error.startswith(f"ModelFailing: model {FAKE_MODEL} failed 10 calls in a row; last error: "
                                f"model {FAKE_MODEL} rejected the request (HTTP 400)")
    assert trial_numbers(run)[0] == 0
    assert not PromptVersion.objects.filter(run=run).exists() and not ChangeRequest.objects.exists()
    actions = audit.actions()
    assert (actions[0], actions[-1]) == ("run.executing", "run.failed")
    assert audit.events()[-1].after["error"].startswith("ModelFailing")
    # Where the broken model was met in the final evaluation, that evaluation is on record as failed, not scored.
    assert not run.evaluations.filter(status="succeeded").exists()
    assert all(e.error.startswith("ModelFailing") for e in run.evaluations.all())


def test_the_final_writes_are_all_or_nothing(db, program, users, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("governance.actions.runs.open_change_request", refuse)
    run = start(program, users["author"], enqueue=False)
    assert runner.execute_run(run.pk, worker_name="w") == RunStatus.FAILED
    run.refresh_from_db()
    assert run.error == "RuntimeError: database went away"
    assert not PromptVersion.objects.filter(run=run).exists(), "the version rolled back with the change request"
    assert not Candidate.objects.filter(run=run).exists()
    assert run.trials.count() == 4, "trials are records of what happened and stay"


# --- workers lost, duplicates, schedules ----------------------------------------------------------------------


def test_a_run_whose_worker_stopped_beating_is_requeued_then_failed(db, program, users, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    dispatched: list[int] = []
    monkeypatch.setattr(runner, "dispatch_run", dispatched.append)
    run = start(program, users["author"], enqueue=False)
    assert claim_run(run.pk, worker="w1", stale_after=60).run is not None
    assert claim_run(run.pk, worker="w2", stale_after=60).skipped.startswith(f"run {run.pk} is running on w1")
    assert schedules.recover_stale_runs(stale_after=60, attempts=2) == {}, "a fresh heartbeat is left alone"

    audit = AuditLog()
    OptimizationRun.objects.filter(pk=run.pk).update(heartbeat_at=run.created_at.replace(year=2020))
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules.recover_stale_runs(stale_after=60, attempts=2) == {run.pk: "queued"}
    assert dispatched == [run.pk]
    assert claim_run(run.pk, worker="w2", stale_after=60).run.attempts == 2
    with pytest.raises(IllegalTransition, match=f"^run {run.pk} is executed by w2 now, not by w1$"):
        finish_run(run, RunStatus.FAILED, error="the lost executor's late failure", worker="w1")
    OptimizationRun.objects.filter(pk=run.pk).update(heartbeat_at=run.created_at.replace(year=2020))
    assert schedules.recover_stale_runs(stale_after=60, attempts=2) == {run.pk: "failed"}
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.stop_reason == "worker lost"
    assert run.error.startswith("worker lost: w2 sent no heartbeat since 2020-")
    assert audit.actions() == ["run.requeued", "run.resumed", "run.failed"]


def test_scheduled_reoptimization_starts_due_programs_with_new_data_once(db, program, users, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    dispatched: list[int] = []
    monkeypatch.setattr(runner, "dispatch_run", dispatched.append)
    assert schedules.reoptimize_due_programs() == {}, "no schedule, no run"
    update_program(program, actor=users["author"], reoptimize_schedule="nightly", reason="keep it fresh")
    with django_capture_on_commit_callbacks(execute=True):
        started = schedules.reoptimize_due_programs()
    run = OptimizationRun.objects.get()
    assert started == {"tickets": run.pk} and dispatched == [run.pk] and run.started_by == users["author"]
    assert schedules.reoptimize_due_programs() == {}, "a queued run is not started twice"
    OptimizationRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED,
                                                     created_at=run.created_at.replace(year=2020))
    assert schedules.reoptimize_due_programs() == {}, "same data as the last run: nothing new to learn"
    import_dataset(program, actor=users["author"], split="train", name="more", rows=rows("train", 40, start=100))
    assert set(schedules.reoptimize_due_programs()) == {"tickets"}


# --- drift ------------------------------------------------------------------------------------------------------


def released_version(program, users, demos: list[dict[str, Any]]) -> PromptVersion:
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["demos"] = demos
    version = create_version(program, actor=users["author"], payload=payload)
    cr = evaluate(open_change_request(version, actor=users["author"], title="Ship demos"))
    for reviewer in (users["reviewer1"], users["reviewer2"]):
        approve_change_request(cr, actor=reviewer, password=password(reviewer), content_hash=version.content_hash)
    version.refresh_from_db()
    release_version(version, actor=users["releaser"], reason="first release")
    return version


def test_drift_check_alerts_when_production_scores_lower_on_new_labels(db, program, users):
    version = released_version(program, users, rows("train", 14))
    assert run_drift_check(program) is None, "no labeled data newer than the approval"
    good = import_dataset(program, actor=users["author"], split="test", name="more known tickets",
                          rows=rows("test", 10, start=20))
    check = run_drift_check(program)
    assert check.dataset == good and check.current == 1.0 and check.alert is None

    audit = AuditLog()
    batch = [json.loads(line) for line in (DEMO_DIR / "labeled_batch.jsonl").read_text().splitlines() if line]
    new = import_dataset(program, actor=users["author"], split="test", name="labeled batch", rows=batch)
    check = run_drift_check(program)
    assert check.dataset == new and check.baseline == 1.0 and check.current < 0.3
    alert = DriftAlert.objects.get()
    assert check.alert == alert and alert.version == version and alert.threshold == 3.0
    assert alert.drop_points == check.drop_points > 70
    assert audit.actions() == ["dataset.imported", "evaluation.requested", "evaluation.started",
                               "evaluation.succeeded", "drift.alert"]
    event = AuditEvent.objects.get(action="drift.alert")
    assert event.after["dataset_hash"] == new.content_hash and event.program == program

    again = run_drift_check(program)
    assert again.alert == alert and DriftAlert.objects.count() == 1, "one alert per version and dataset"


# --- the command ---------------------------------------------------------------------------------------------


def test_optimize_command_runs_in_the_foreground_and_prints_the_change_request(db, program, users, lm_server):
    out, err = io.StringIO(), io.StringIO()
    call_command("optimize", "tickets", "--preset", "light", "--seed", "0", "--actor", "author2",
                 "--num-trials", "4", "--model", FAKE_MODEL, "--api-base", lm_server.url, stdout=out, stderr=err)
    run = OptimizationRun.objects.get()
    cr = ChangeRequest.objects.get(version__run=run)
    text = out.getvalue()
    assert f"run {run.pk} of tickets started by author2 (light, seed 0, model {FAKE_MODEL})" in text
    assert f"run {run.pk} succeeded: completed 4 trials; 4 trials" in text
    assert f"change request {cr.pk}: {cr.title} [open]" in text
    assert "test: candidate 1.000, production" in text and "recommended: yes; Recommended: +" in text
    assert "4/4" in err.getvalue(), "the progress bar reached the end"
    assert run.started_by == users["author2"] and run.worker.startswith("cli@")


def test_optimize_command_reports_refusals_and_failures(db, program, users, settings, tmp_path):
    with pytest.raises(CommandError, match="^no program with slug 'nope'$"):
        call_command("optimize", "nope")
    with pytest.raises(CommandError, match="^user 'reviewer1' needs the author role"):
        call_command("optimize", "tickets", "--actor", "reviewer1")
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "cold_cache.sqlite3")
    with FakeLMServer() as broken:
        broken.fail_next(400, 1000)
        with pytest.raises(CommandError, match=r"^run \d+ failed: error; 0 trials.*\nModelFailing: .*HTTP 400"):
            call_command("optimize", "tickets", "--api-base", broken.url, stdout=io.StringIO(),
                         stderr=io.StringIO())


def test_runs_use_an_optuna_study_outside_the_app_database_on_sqlite(db, settings):
    settings.GOVERNANCE_OPTUNA_STORAGE = ""
    assert connection.vendor == "sqlite"
    assert studies.optuna_storage_url() == f"sqlite:///{Path(settings.VAR_DIR) / 'optuna.sqlite3'}"


def test_a_run_queued_too_long_has_its_task_sent_again_once_per_interval(db, program, users, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    dispatched: list[int] = []
    monkeypatch.setattr(runner, "dispatch_run", dispatched.append)
    run = start(program, users["author"], enqueue=False)  # its message never reaches a worker
    assert schedules.recover_stale_runs(queued_after=600) == {}, "a freshly queued run is left alone"

    audit = AuditLog()
    OptimizationRun.objects.filter(pk=run.pk).update(created_at=run.created_at.replace(year=2020))
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules.recover_stale_runs(queued_after=600) == {run.pk: "redispatched"}
        assert schedules.recover_stale_runs(queued_after=600) == {}, "the next re-send waits a full interval"
    assert dispatched == [run.pk]
    assert audit.actions() == ["run.redispatched"]
    assert claim_run(run.pk, worker="w1", stale_after=60).run is not None
    assert claim_run(run.pk, worker="w2", stale_after=60).skipped.startswith(f"run {run.pk} is running on w1"), \
        "the duplicate delivery is skipped"


def test_a_resumed_run_takes_over_the_final_evaluation_its_lost_attempt_left_running(db, program, users):
    from governance.actions import evaluations as evaluation_actions
    from governance.actions.reviews import baseline_payload, evaluation_dataset

    run = start(program, users["author"], enqueue=False)
    stranded = evaluation_actions.request_evaluation(program, baseline_payload(program, None),
                                                     evaluation_dataset(program), actor=None, run=run, announce=False)
    evaluation_actions.claim_evaluation(stranded.pk, worker=f"run-{run.pk}")  # the attempt that died held it
    assert runner.execute_run(run.pk, worker_name="w2") == RunStatus.SUCCEEDED
    stranded.refresh_from_db()
    assert stranded.status == "failed" and stranded.error.startswith(f"worker lost: run {run.pk}'s earlier attempt")
    cr = ChangeRequest.objects.get(version__run=run)
    assert cr.baseline_evaluation.status == "succeeded" and cr.baseline_evaluation != stranded
