import json

import pytest

from optimizer import LM, MIPRO, Budget, MIPROConfig, Program, TrialRecord, choice_match, examples_from_records

from .simulated import DEMO_DIR, SimulatedClassifier, load_rows


@pytest.fixture
def program():
    return Program.from_json((DEMO_DIR / "program.json").read_text())


@pytest.fixture
def data(program):
    train = examples_from_records(load_rows("train"), program)
    val = examples_from_records(load_rows("val"), program)
    return train, val


@pytest.fixture
def simulated(fake_server):
    fake_server.responder = SimulatedClassifier(min_demos=14)
    return fake_server


def compile_once(program, data, lm, **config):
    settings = {"preset": "light", "seed": 0, "num_trials": 6, **config}
    records: list[TrialRecord] = []
    result = MIPRO(choice_match, lm, MIPROConfig(**settings), callback=records.append).compile(program, *data)
    return result, records


def test_search_finds_the_configuration_that_wins(program, data, simulated, fake_lm_config):
    result, records = compile_once(program, data, LM(fake_lm_config()))
    assert result.best_score == 1.0
    assert len(result.program.predictors[0].demos) >= 14
    assert len(records) == 6 and all(isinstance(r, TrialRecord) for r in records)
    assert any(r.state == "pruned" for r in records), "hopeless configurations should stop early"
    pruned = [r for r in records if r.state == "pruned"]
    assert all(r.examples < len(data[1]) for r in pruned)
    assert result.stop_reason == "completed 6 trials"
    assert result.usage.calls == simulated.responder.calls


def test_instruction_candidates_are_proposed_with_history(program, data, simulated, fake_lm_config):
    simulated.responder = SimulatedClassifier(min_demos=100)  # demos never suffice: failures to learn from
    result, _ = compile_once(program, data, LM(fake_lm_config()))
    candidates = result.candidates.instructions["classify"]
    assert candidates[0].source == "original"
    assert len(candidates) == 3 and {c.source for c in candidates[1:]} <= {"lm", "fallback"}
    proposal_prompts = [p for p in simulated.prompts if p.rstrip().endswith("Instruction:")]
    assert proposal_prompts and "Instructions tried so far" in proposal_prompts[-1]
    assert "gets wrong" in proposal_prompts[0]


def test_same_seed_and_cache_give_the_same_program(program, data, simulated, fake_lm_config, tmp_path):
    first, _ = compile_once(program, data, LM(fake_lm_config()))
    second, _ = compile_once(program, data, LM(fake_lm_config()))
    assert second.program.to_json() == first.program.to_json()
    assert second.usage.calls == 0, "the second run is answered from the cache"
    fresh, _ = compile_once(program, data, LM(fake_lm_config(cache_path=str(tmp_path / "other.sqlite"))))
    assert fresh.program.to_json() == first.program.to_json()


def test_zero_shot_and_labeled_only_modes_work(program, data, simulated, fake_lm_config):
    zero, _ = compile_once(program, data, LM(fake_lm_config()), zero_shot=True, num_trials=6)
    assert zero.program.predictors[0].demos == ()
    assert "demos" not in json.dumps(zero.best_params)
    labeled, _ = compile_once(program, data, LM(fake_lm_config()), labeled_only=True, num_trials=6)
    assert all(not d.get("augmented") for d in labeled.program.predictors[0].demos)
    assert all(s.source != "bootstrapped" for s in labeled.candidates.demo_sets["classify"])


def test_budget_cap_stops_cleanly_with_the_best_so_far(program, data, simulated, fake_lm_config):
    lm = LM(fake_lm_config(), Budget(max_calls=120))
    result, records = compile_once(program, data, lm)
    assert result.stop_reason.startswith("budget exhausted: calls limit 120")
    assert lm.usage().calls == 120
    assert records[-1].state == "failed"
    assert result.program.predictors[0].demos, "the best configuration found so far is returned"


def test_bootstrapped_demos_come_from_passing_traces(program, data, simulated, fake_lm_config):
    result, _ = compile_once(program, data, LM(fake_lm_config()))
    sets = result.candidates.demo_sets["classify"]
    boot = [s for s in sets if s.source == "bootstrapped"]
    assert boot and sum(1 for d in boot[0].demos if d.get("augmented")) == 4
    labels = {row["ticket"]: row["category"] for row in load_rows("train")}
    assert all(labels[d["ticket"]] == d["category"] for d in boot[0].demos)
