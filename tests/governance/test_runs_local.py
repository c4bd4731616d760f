"""A tiny optimization run end to end on the real local model (Gemma 3 270M in-process through llama.cpp).

Small on purpose (2 trials; 14 train, 7 validation and 7 test tickets: demo prompts stay short, since prompt
length is what costs time on a CPU): it proves the governed path works with the
model the embedded default ships, not how good the model gets. A cold cache, so every answer is the model's.
"""

from __future__ import annotations

import json

import pytest

from governance import runner
from governance.actions import create_program, import_dataset, start_run
from governance.models import ChangeRequest, PromptVersion, RunStatus
from tests.optimizer.simulated import DEMO_DIR, load_rows

pytestmark = pytest.mark.local_model


@pytest.mark.timeout(900)
def test_a_tiny_run_on_the_local_model_proposes_a_version(db, users, settings, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("OPTIMIZER_LOCAL_THREADS", "1")  # steadier than 2 spinning threads on a shared machine
    settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path / "lm_cache.sqlite3")
    settings.GOVERNANCE_OPTUNA_STORAGE = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    settings.GOVERNANCE_RUN_HEARTBEAT_SECONDS = 3600
    program = create_program(actor=users["author"], slug="local", name="Ticket triage",
                             spec=json.loads((DEMO_DIR / "program.json").read_text()), metric="choice",
                             lm_config={"model": "local/gemma-3-270m", "max_tokens": 8},
                             members=[users["reviewer1"], users["reviewer2"]])
    for split, n in (("train", 14), ("val", 7), ("test", 7)):
        import_dataset(program, actor=users["author"], split=split, name=split, rows=load_rows(split)[:n])

    run = start_run(program, actor=users["author"], num_trials=2, enqueue=False)
    assert runner.execute_run(run.pk, worker_name="local-test") == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.trials.count() == 2 and run.calls > 10 and run.cost_usd == 0.0
    version = PromptVersion.objects.get(run=run)
    assert version.payload["lm"] == {"model": "local/gemma-3-270m", "temperature": 0.0, "max_tokens": 8}
    cr = ChangeRequest.objects.get(version=version)
    candidate, production = cr.candidate_evaluation, cr.baseline_evaluation
    assert candidate.status == production.status == "succeeded" and candidate.examples == production.examples == 7
    assert candidate.run == run and candidate.lm_config["model"] == "local/gemma-3-270m"
    assert 0.0 <= candidate.score <= 1.0 and 0.0 <= production.score <= 1.0
    assert version.scores == {"test": candidate.score}
    assert cr.recommended == cr.comparison["significant_gain"]
