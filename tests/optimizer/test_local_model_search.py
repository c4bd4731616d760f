"""The real local model (Gemma 3 270M base) end to end on a small slice of the project's demo data."""

import pytest

from optimizer import LM, MIPRO, LMConfig, MIPROConfig, Program, choice_match, evaluate, examples_from_records

from .simulated import DEMO_DIR, load_rows

pytest.importorskip("llama_cpp", reason="the local model needs the `local` extra")

pytestmark = pytest.mark.local_model


def test_light_search_with_the_local_model_beats_zero_shot(tmp_path):
    program = Program.from_json((DEMO_DIR / "program.json").read_text())
    train = examples_from_records(load_rows("train"), program)[:70]
    val = examples_from_records(load_rows("val"), program)[:21]
    lm = LM(LMConfig("local/gemma-3-270m", cache_path=str(tmp_path / "cache.sqlite"), max_concurrency=2))
    config = MIPROConfig(preset="light", seed=0, num_trials=3, num_instructions=2, max_bootstrapped_demos=2,
                         rungs=(7,))
    result = MIPRO(choice_match, lm, config).compile(program, train, val)

    zero_shot = evaluate(program, val, choice_match, lm)
    assert len(result.trials) == 3
    assert result.best_score > zero_shot.score
    assert result.program.predictors[0].demos, "the local model needs demos; the search keeps them"
    again = evaluate(result.program, val, choice_match, lm)
    assert again.score == pytest.approx(result.best_score)  # the compiled program reproduces its score
    assert lm.usage().cached_calls > 0
