import json
import random
import time
import zlib

import pytest

from optimizer import LM, MIPRO, Budget, MIPROConfig, Program, TrialRecord, choice_match, examples_from_records

from .simulated import DEMO_DIR, NearTies, SimulatedClassifier, load_rows


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


class Jittery(SimulatedClassifier):
    """Gets a different 70% of the tickets right for each number of demos (so configurations race close to
    each other's bars), and answers after a random pause, so concurrent calls finish in a different order on
    every run."""

    def __call__(self, prompt, request):
        time.sleep(random.random() * 0.01)
        answer = super().__call__(prompt, request)
        if "\nCategory:" not in prompt or "Ticket: " not in prompt:
            return answer
        truth = self.labels.get(prompt.rsplit("Ticket: ", 1)[1].rsplit("\nCategory:", 1)[0].strip(), "feedback")
        right = zlib.crc32(f"{prompt.count('Category: ')}|{prompt[-200:]}".encode()) % 10 < 7
        return f" {truth}\n" if right else (" billing\n" if truth != "billing" else " refund\n")


def test_the_search_does_not_depend_on_which_answer_arrives_first(program, data, simulated, fake_lm_config,
                                                                   tmp_path):
    simulated.responder = Jittery()
    runs = [compile_once(program, data, LM(fake_lm_config(cache_path=str(tmp_path / f"cold{i}.sqlite"))))
            for i in range(2)]
    (first, first_trials), (second, second_trials) = runs
    assert [(t.params, t.examples, t.score) for t in first_trials] == \
        [(t.params, t.examples, t.score) for t in second_trials]
    assert any(t.state == "pruned" and 0 < t.examples for t in first_trials), "some trial was cut mid-rung"
    assert second.program.to_json() == first.program.to_json()


def test_zero_shot_and_labeled_only_modes_work(program, data, simulated, fake_lm_config):
    zero, _ = compile_once(program, data, LM(fake_lm_config()), zero_shot=True, num_trials=6)
    assert zero.program.predictors[0].demos == ()
    assert "demos" not in json.dumps(zero.best_params)
    labeled, _ = compile_once(program, data, LM(fake_lm_config()), labeled_only=True, num_trials=6)
    assert all(not d.get("augmented") for d in labeled.program.predictors[0].demos)
    assert all(s.source != "bootstrapped" for s in labeled.candidates.demo_sets["classify"])


def test_budget_cap_stops_cleanly_with_the_best_so_far(program, data, simulated, fake_lm_config):
    simulated.responder = NearTies(min_demos=14)  # no perfect score: every trial keeps spending
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


def test_costly_trials_that_never_improve_stop_the_search(program, data, simulated, fake_lm_config):
    simulated.responder = NearTies(min_demos=8)
    patient, records = compile_once(program, data, LM(fake_lm_config()), num_trials=20, patience=3)
    assert patient.stop_reason == "stopped early: 3 costly trials in a row found no better validation score"
    assert len(records) < 20
    exhaustive, records = compile_once(program, data, LM(fake_lm_config()), num_trials=20, patience=0)
    assert exhaustive.stop_reason == "completed 20 trials" and len(records) == 20
    assert exhaustive.best_score == patient.best_score, "the trials after the stop found nothing better"


def test_cheap_trials_do_not_use_up_the_patience(program, data, simulated, fake_lm_config):
    """Once the best is perfect nothing can beat it, so every later trial stops before its first call."""
    result, records = compile_once(program, data, LM(fake_lm_config()), num_trials=12, patience=2)
    assert result.best_score == 1.0 and result.stop_reason == "completed 12 trials"
    assert all(r.calls == 0 for r in records[-3:])


def test_a_hopeless_configuration_costs_a_few_calls_not_a_rung(program, data, simulated, fake_lm_config):
    """The racer checks the bar after every answer with at most max_concurrency calls in flight."""
    from optimizer.search import Racer, SearchState, demo_counts_for

    result, _ = compile_once(program, data, LM(fake_lm_config()))
    lm = LM(fake_lm_config(max_concurrency=4, cache_path=None))
    state = SearchState(program, list(data[1]), result.candidates, choice_match, lm, MIPROConfig(),
                        rungs=(10, 30, len(data[1])), counts=demo_counts_for(MIPROConfig(), program))
    zero_shot = {"classify.instruction": 0, "classify.demos": 0, "classify.demo_count": 0}
    outcome = Racer(state, bars={10: 0.9}).run(zero_shot, lambda score, step: None)
    assert not outcome.is_full and outcome.score == 0.0
    # Two wrong answers put 0.9 out of reach; at most three more calls were already in flight.
    assert 2 <= lm.usage().calls <= 5 and outcome.examples <= 5


def test_a_trial_reads_the_bars_again_at_each_rung(program, data, simulated, fake_lm_config):
    """Another worker's trial that reached rung 30 meanwhile sets a bar this trial did not know at its start."""
    from optimizer.search import Racer, SearchState, demo_counts_for

    result, _ = compile_once(program, data, LM(fake_lm_config()))
    lm = LM(fake_lm_config(cache_path=None))
    state = SearchState(program, list(data[1]), result.candidates, choice_match, lm, MIPROConfig(),
                        rungs=(10, 30, len(data[1])), counts=demo_counts_for(MIPROConfig(), program))
    zero_shot = {"classify.instruction": 0, "classify.demos": 0, "classify.demo_count": 0}
    reads: list[int] = []

    def elsewhere() -> dict[int, float]:
        reads.append(lm.usage().calls)
        return {30: 1.0 + 1e-9}  # a perfect rung 30 elsewhere: nothing can reach it now

    outcome = Racer(state, bars={}, refresh=elsewhere).run(zero_shot, lambda score, step: None)
    assert outcome.examples == 10 and not outcome.is_full
    assert reads == [10], "read once, after the first rung, before any call of the second"
    alone = Racer(state, bars={}).run(zero_shot, lambda score, step: None)
    assert alone.is_full, "without the new bar the same configuration races through the whole set"


def test_a_score_copied_from_the_proposal_prompt_is_dropped():
    from optimizer.proposal import clean_instruction

    assert clean_instruction('Classify the text into one category: a, b, c." (40%)') == \
        "Classify the text into one category: a, b, c."
    assert clean_instruction("Step 1: classify the ticket (20.5 %)") == "Step 1: classify the ticket"
    assert clean_instruction("Answer with the team name (see the list above)") == \
        "Answer with the team name (see the list above)"
    assert clean_instruction("Classify the text into one category: Business, Sports. (60% or more)") == \
        "Classify the text into one category: Business, Sports."
    assert clean_instruction('- "Classify the text into one category: Business, Sports.') == \
        "Classify the text into one category: Business, Sports."


def test_of_two_configurations_with_the_same_score_the_shorter_prompt_is_chosen(program, data, simulated,
                                                                              fake_lm_config):
    import optuna

    from optimizer.search import SearchState, best_configuration, demo_counts_for, prompt_chars

    result, _ = compile_once(program, data, LM(fake_lm_config()))
    lm = LM(fake_lm_config())
    state = SearchState(program, list(data[1]), result.candidates, choice_match, lm, MIPROConfig(),
                        rungs=(10, 30, len(data[1])), counts=demo_counts_for(MIPROConfig(), program))
    small, large = min(state.counts), max(state.counts)
    params = [{"classify.instruction": 0, "classify.demos": 1, "classify.demo_count": count}
              for count in (large, small, large)]
    assert prompt_chars(state, params[1]) < prompt_chars(state, params[0])
    distributions = {"classify.instruction": optuna.distributions.CategoricalDistribution([0]),
                     "classify.demos": optuna.distributions.CategoricalDistribution([1]),
                     "classify.demo_count": optuna.distributions.CategoricalDistribution(list(state.counts))}
    study = optuna.create_study(direction="maximize")
    for p, score in zip(params, (0.9, 0.9, 0.85), strict=True):
        study.add_trial(optuna.trial.create_trial(params=p, distributions=distributions, value=score,
                                                  user_attrs={"full_score": score}))
    assert best_configuration(study, state) == (params[1], 0.9), "equal scores: fewer demos, fewer tokens"
    study.add_trial(optuna.trial.create_trial(params=params[0], distributions=distributions, value=0.95,
                                              user_attrs={"full_score": 0.95}))
    assert best_configuration(study, state) == (params[0], 0.95), "a better score still wins over a shorter prompt"


@pytest.mark.parametrize(("total", "done", "expected"), [
    (25, 30, False),  # needs 29 of the last 30 at a running rate of 83%: improbable
    (27, 30, True),   # needs 27 of 30 at 90%: likely enough to keep going
    (53, 59, True),   # already at the bar
    (20, 30, False),
])
def test_the_final_rung_keeps_only_configurations_likely_to_beat_the_best(total, done, expected):
    from optimizer.search import can_still_beat

    assert can_still_beat(total, done, size=60, bar=53 / 60 + 1e-9) is expected


def test_the_one_se_rule_picks_the_shorter_prompt_unless_the_best_wins_beyond_noise(program, data, simulated,
                                                                                     fake_lm_config):
    import optuna

    from optimizer.search import SearchState, best_configuration, demo_counts_for

    result, _ = compile_once(program, data, LM(fake_lm_config()))
    valset = list(data[1])[:20]
    rule = MIPROConfig(simplest_within_se=True)
    state = SearchState(program, valset, result.candidates, choice_match, LM(fake_lm_config()), rule,
                        rungs=(10, 20), counts=demo_counts_for(rule, program))
    small, large = ({"classify.instruction": 0, "classify.demos": 1, "classify.demo_count": c}
                    for c in (min(state.counts), max(state.counts)))
    distributions = {name: optuna.distributions.CategoricalDistribution([value]) for name, value in small.items()}
    distributions["classify.demo_count"] = optuna.distributions.CategoricalDistribution(list(state.counts))

    def study_with(large_scores, small_scores):
        study = optuna.create_study(direction="maximize")
        for params, scores in ((large, large_scores), (small, small_scores)):
            state.scores_by_config[state.config_key(params)] = list(scores)
            mean = sum(scores) / len(scores)
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=mean,
                                                      user_attrs={"full_score": mean}))
        return study

    # 18/20 against 17/20, differing on 3 examples: within one paired standard error -> the shorter prompt.
    near = study_with([1.0] * 18 + [0.0] * 2, [1.0] * 16 + [0.0, 0.0, 1.0, 0.0])
    assert best_configuration(near, state) == (small, 0.85)
    # 20/20 against 10/20: a win far beyond the noise keeps the best.
    far = study_with([1.0] * 20, [1.0] * 10 + [0.0] * 10)
    assert best_configuration(far, state) == (large, 1.0)
    off = SearchState(program, valset, result.candidates, choice_match, state.lm, MIPROConfig(),
                      rungs=(10, 20), counts=state.counts, scores_by_config=state.scores_by_config)
    assert best_configuration(near, off) == (large, 0.9), "off by default: the best validation score"
