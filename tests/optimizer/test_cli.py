"""The command line, run as a user would: a real subprocess against the loopback fake LM server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .simulated import DEMO_DIR, NearTies, SimulatedClassifier, with_judge

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": "test-key", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "optimizer", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def fake_model_args(server, cache: Path) -> list[str]:
    return ["--model", "text-completion-openai/fake", "--api-base", server.url, "--cache", str(cache)]


def test_optimize_writes_compiled_program_and_report_then_evaluate_scores_it(fake_server, tmp_path):
    fake_server.responder = SimulatedClassifier()
    out = tmp_path / "compiled.json"
    result = cli("optimize", "--program", str(DEMO_DIR / "program.json"), "--train", str(DEMO_DIR / "train.jsonl"),
                 "--val", str(DEMO_DIR / "val.jsonl"), "--metric", "choice", "--preset", "light", "--seed", "0",
                 "--trials", "5", "--out", str(out), *fake_model_args(fake_server, tmp_path / "c.sqlite"))
    assert result.returncode == 0, result.stderr
    assert "optimizing" in result.stderr and "trial" in result.stderr  # the progress bar
    compiled = json.loads(out.read_text())
    assert compiled["metadata"]["val_score"] == 1.0 and len(compiled["predictors"][0]["demos"]) >= 14
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert len(report["trials"]) == 5 and report["usage"]["calls"] > 0
    assert {"params", "score", "examples", "calls", "tokens", "cost_usd", "seconds", "state"} <= set(report["trials"][0])

    scored = cli("evaluate", "--program", str(out), "--data", str(DEMO_DIR / "test.jsonl"),
                 *fake_model_args(fake_server, tmp_path / "c.sqlite"))
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.startswith("score 1.0000 on 105 examples")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, expected", [
    ("unknown_field", "row 2: unknown field(s) 'priority'"),
    ("malformed_row", "row 3: malformed JSON"),
    ("unknown_metric", "unknown metric 'accuracy'"),
    ("missing_file", "nope.jsonl: file not found"),
    ("bad_program", "unknown type 'number'"),
])
def test_bad_input_is_one_line_error_with_nonzero_exit(case, expected, tmp_path, fake_server):
    rows = [json.dumps({"ticket": "where is my parcel", "category": "shipping"})] * 3
    train = tmp_path / "train.jsonl"
    program = DEMO_DIR / "program.json"
    metric = "choice"
    if case == "unknown_field":
        rows[1] = json.dumps({"ticket": "x", "category": "refund", "priority": "high"})
    if case == "malformed_row":
        rows[2] = '{"ticket": "x", "category": '
    if case == "unknown_metric":
        metric = "accuracy"
    if case == "missing_file":
        train = tmp_path / "nope.jsonl"
    if case == "bad_program":
        program = tmp_path / "program.json"
        program.write_text(json.dumps({"name": "p", "predictors": [{"name": "a", "signature": {
            "inputs": [{"name": "t"}], "outputs": [{"name": "n", "type": "number"}]}}]}))
    if case != "missing_file":
        train.write_text("\n".join(rows) + "\n")
    result = cli("optimize", "--program", str(program), "--train", str(train), "--metric", metric,
                 *fake_model_args(fake_server, tmp_path / "c.sqlite"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_unreachable_model_is_one_line_error(tmp_path):
    result = cli("evaluate", "--program", str(DEMO_DIR / "program.json"), "--data", str(DEMO_DIR / "test.jsonl"),
                 "--model", "text-completion-openai/fake", "--api-base", f"http://127.0.0.1:{_closed_port()}/v1",
                 "--cache", "")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot reach model text-completion-openai/fake")


def _complete_trials(storage: str, study: str) -> int:
    import optuna

    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return 0
    return len(loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))


def test_killed_run_resumes_from_storage_with_the_same_number_of_trials(fake_server, tmp_path):
    import optuna

    # Near-ties: every trial keeps calling the model (a perfect score would make later trials free and the run
    # could finish between two polls); patience 0 so the run always does its 8 trials.
    classifier = NearTies()

    def slow(prompt, request):
        time.sleep(0.01)
        return classifier(prompt, request)

    fake_server.responder = slow
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = ["optimize", "--program", str(DEMO_DIR / "program.json"), "--train", str(DEMO_DIR / "train.jsonl"),
            "--val", str(DEMO_DIR / "val.jsonl"), "--trials", "8", "--patience", "0",
            "--storage", storage, "--study", "resumable",
            "--out", str(tmp_path / "compiled.json"), "--quiet",
            *fake_model_args(fake_server, tmp_path / "c.sqlite")]
    env = {**os.environ, "OPENAI_API_KEY": "test-key", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    first = subprocess.Popen([sys.executable, "-m", "optimizer", *args], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _complete_trials(storage, "resumable") < 3 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, "the run finished before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = _complete_trials(storage, "resumable")
    assert 3 <= done_before < 8

    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="resumable", storage=storage)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 8, "same number of trials as an uninterrupted run"
    assert len(trials) - len(complete) <= 1, "only the trial cut by the kill is left incomplete; nothing re-run"
    report = json.loads((tmp_path / "compiled.report.json").read_text())
    assert len(report["trials"]) == 8 - done_before
    assert min(t["number"] for t in report["trials"]) >= done_before


def test_the_call_cap_bounds_the_task_model_its_judge_and_the_proposal_model_together(fake_server, tmp_path,
                                                                                    monkeypatch):
    fake_server.responder = with_judge(SimulatedClassifier())
    for name, value in (("MODEL", "text-completion-openai/judge"), ("API_BASE", fake_server.url), ("API_KEY", "x")):
        monkeypatch.setenv(f"OPTIMIZER_JUDGE_{name}", value)
    out = tmp_path / "compiled.json"
    result = cli("optimize", "--program", str(DEMO_DIR / "program.json"), "--train", str(DEMO_DIR / "train.jsonl"),
                 "--val", str(DEMO_DIR / "val.jsonl"), "--metric", "judge", "--trials", "8", "--max-calls", "150",
                 "--proposal-model", "text-completion-openai/proposer", "--out", str(out),
                 *fake_model_args(fake_server, tmp_path / "c.sqlite"))
    assert result.returncode == 0, result.stderr
    models = [r["model"] for r in fake_server.requests]
    assert {"fake", "judge", "proposer"} <= set(models), "all three models were called"
    assert len(models) == 150, "the three together stop at the cap"
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["stop_reason"].startswith("budget exhausted: calls limit 150")
