"""LM failures are errors, never silent wrong answers, and prompts fit the model's context window.

Against the loopback fake server: failures are injected with `fail_next`, context windows are set small.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from optimizer import LM, MIPRO, Example, LMConfig, MIPROConfig, Predict, Program, choice_match, evaluate
from optimizer import examples_from_records
from optimizer.errors import LMUnreachableError, ModelFailing
from optimizer.fitting import PromptFitter

from .simulated import DEMO_DIR, SimulatedClassifier, load_rows
from .test_cli import cli, fake_model_args

PROGRAM = Program("t", (Predict("classify", "ticket -> category: choice[billing|refund]", instructions="Route."),))
EXAMPLES = [Example({"ticket": f"t{i}"}, {"category": "billing"}) for i in range(6)]


@pytest.fixture
def support_program():
    return Program.from_json((DEMO_DIR / "program.json").read_text())


@pytest.fixture
def support_data(support_program):
    return (examples_from_records(load_rows("train"), support_program),
            examples_from_records(load_rows("val"), support_program))


def always_right(prompt, request):
    """Answers every classification prompt with the ticket's true label; proposals get a sentence."""
    return SimulatedClassifier(min_demos=0)(prompt, request)


# --- LM failures are counted as errors -------------------------------------------------------------------------


def test_an_evaluation_with_injected_failures_reports_them_as_lm_errors(fake_server, fake_lm_config):
    fake_server.responder = lambda prompt, request: " billing\n" if prompt.endswith("t5\nCategory:") else " nonsense\n"
    fake_server.fail_next(400, 2)  # the first two calls are rejected (not retryable)
    result = evaluate(PROGRAM, EXAMPLES, choice_match, LM(fake_lm_config(max_concurrency=1)))
    assert result.lm_errors == 2 and result.parse_errors == 3 and result.error_count == 5
    assert [r.error_kind for r in result.results[:2]] == ["lm", "lm"]
    assert "LM error" in result.results[0].error and "HTTP 400" in result.results[0].error
    assert result.to_dict()["lm_errors"] == 2 and result.to_dict()["parse_errors"] == 3
    assert result.results[0].to_dict()["error_kind"] == "lm"


def test_an_evaluation_against_a_dead_endpoint_raises_after_ten_failures_in_a_row(fake_server, fake_lm_config):
    fake_server.fail_next(400, 1000)
    examples = [Example({"ticket": f"t{i}"}, {"category": "billing"}) for i in range(40)]
    with pytest.raises(ModelFailing, match=r"failed 10 calls in a row; last error: .*HTTP 400") as caught:
        evaluate(PROGRAM, examples, choice_match, LM(fake_lm_config(max_concurrency=1)))
    assert caught.value.failures == 10 and isinstance(caught.value, LMUnreachableError)
    assert len(fake_server.requests) == 10, "the call after the limit is refused without being sent"


def test_a_success_resets_the_count_and_zero_disables_the_limit(fake_server, fake_lm_config):
    lm = LM(fake_lm_config(max_concurrency=1, max_consecutive_failures=3))
    fake_server.fail_next(400, 2)
    fake_server.delay_next(0.0)  # answered normally: the count starts again
    fake_server.fail_next(400, 2)
    assert evaluate(PROGRAM, EXAMPLES[:5], choice_match, lm).lm_errors == 4
    unlimited = LM(fake_lm_config(max_concurrency=1, max_consecutive_failures=0, cache_path=None))
    fake_server.fail_next(400, 20)
    assert evaluate(PROGRAM, EXAMPLES * 3, choice_match, unlimited).lm_errors == 18


def test_a_run_whose_model_starts_failing_stops_with_the_reason(support_program, support_data, fake_server,
                                                                 fake_lm_config):
    fake_server.responder = SimulatedClassifier(min_demos=100)  # never 100%: every trial makes calls
    records = []

    def break_after_first_trial(record):
        records.append(record)
        if len(records) == 1:
            fake_server.fail_next(400, 100_000)

    mipro = MIPRO(choice_match, LM(fake_lm_config(max_concurrency=1)),
                  MIPROConfig(num_trials=6, max_consecutive_failures=4), callback=break_after_first_trial)
    with pytest.raises(ModelFailing, match=r"failed 4 calls in a row; last error: .*HTTP 400"):
        mipro.compile(support_program, *support_data)
    *earlier, failed = records
    assert failed.state == "failed" and "failed 4 calls in a row" in failed.error and failed.failed_calls == 4
    assert earlier and all(r.state != "failed" for r in earlier), "the run stopped at its first failing trial"


def test_the_run_limit_overrides_the_lms_and_is_restored(support_program, support_data, fake_server, fake_lm_config):
    fake_server.responder = SimulatedClassifier()
    lm = LM(fake_lm_config(max_concurrency=1))
    fake_server.fail_next(400, 100_000)
    with pytest.raises(ModelFailing, match="failed 2 calls in a row"):
        MIPRO(choice_match, lm, MIPROConfig(num_trials=2, max_consecutive_failures=2)).compile(
            support_program, *support_data)
    with pytest.raises(ModelFailing, match="failed 10 calls in a row"):
        evaluate(PROGRAM, EXAMPLES * 4, choice_match, lm)


def test_trial_records_and_the_run_report_count_failed_calls(support_program, support_data, fake_server,
                                                             fake_lm_config):
    fake_server.responder = SimulatedClassifier()
    fake_server.fail_next(400, 3)  # three rejected calls early in the run, fewer than the limit
    result = MIPRO(choice_match, LM(fake_lm_config(max_concurrency=1)), MIPROConfig(num_trials=3)).compile(
        support_program, *support_data)
    assert result.failed_calls == 3 == result.usage.failed_calls
    assert result.report()["failed_calls"] == 3
    assert all("failed_calls" in t.to_dict() for t in result.trials)


def test_cli_prints_lm_errors_and_stops_a_failing_run(fake_server, tmp_path):
    fake_server.responder = SimulatedClassifier(min_demos=0)
    cache = tmp_path / "c.sqlite"
    fake_server.delay_next(0.0)  # the reachability check is answered
    fake_server.fail_next(400, 2)
    scored = cli("evaluate", "--program", str(DEMO_DIR / "program.json"), "--data", str(DEMO_DIR / "test.jsonl"),
                 "--limit", "5", "--concurrency", "1", *fake_model_args(fake_server, cache))
    assert scored.returncode == 0, scored.stderr
    assert "(2 failed predictions: 2 LM errors, 0 unparseable answers)" in scored.stdout
    assert "2 failed" in scored.stdout.split(";")[1]

    fake_server.delay_next(0.0)
    fake_server.fail_next(400, 100_000)
    out = tmp_path / "compiled.json"
    run = cli("optimize", "--program", str(DEMO_DIR / "program.json"), "--train", str(DEMO_DIR / "train.jsonl"),
              "--val", str(DEMO_DIR / "val.jsonl"), "--trials", "3", "--quiet", "--out", str(out),
              "--max-consecutive-failures", "3", *fake_model_args(fake_server, tmp_path / "fresh.sqlite"))
    assert run.returncode == 2
    # Four calls run at once, so the error raised may be one of the calls in flight beyond the third.
    assert re.search(r"error: run stopped: model text-completion-openai/fake failed [3-6] calls in a row; "
                     r"last error: .*HTTP 400.*; nothing written\)", run.stderr), run.stderr
    assert "Traceback" not in run.stderr and not out.exists()


# --- prompts fit the context window ----------------------------------------------------------------------------


def test_demos_that_would_overflow_a_512_token_window_are_cut_to_fit_it(support_program, support_data, fake_server,
                                                                        fake_lm_config):
    fake_server.responder = always_right
    lm = LM(fake_lm_config(context_window=512))
    result = MIPRO(choice_match, lm, MIPROConfig(num_trials=4, seed=0)).compile(support_program, *support_data)
    assert lm.token_estimator == "chars/3"
    for body in fake_server.requests:
        prompt = body["prompt"][0] if isinstance(body["prompt"], list) else body["prompt"]
        assert lm.count_tokens(prompt) + body["max_tokens"] <= 512, prompt
    cut = [s for s in result.candidates.demo_sets["classify"] if "fit" in s.metadata]
    assert cut, "the 21-demo sets cannot fit 512 tokens"
    fit = cut[0].metadata["fit"]
    assert fit["context_window"] == 512 and fit["dropped"] > 0 and fit["estimator"] == "chars/3"
    assert cut[0].to_dict()["metadata"]["fit"] == fit  # stored with the candidates (and in the run report)
    labeled = next(s for s in result.candidates.demo_sets["classify"] if s.source == "labeled")
    counts = Counter(d["category"] for d in labeled.demos)
    assert max(counts.values()) - min(counts.values()) <= 1, "a balanced set stays balanced when cut"


def test_a_fitted_set_drops_the_longest_demos_and_keeps_what_fits(fake_server, fake_lm_config):
    short = [{"ticket": "short one", "category": c} for c in ("billing", "refund")] * 3
    long = [{"ticket": "long " * 150, "category": "billing"}, {"ticket": "long " * 150, "category": "refund"}]
    demos = [long[0], *short[:3], long[1], *short[3:]]
    lm = LM(fake_lm_config(context_window=512))
    fitter = PromptFitter.for_program(PROGRAM, EXAMPLES, lm)
    kept = fitter.fit(PROGRAM.predictors[0], demos)
    assert kept == [*short[:3], *short[3:]], "both long demos go, the short ones stay in order"
    assert fitter.prompt_tokens(PROGRAM.predictors[0], kept) <= fitter.budget(PROGRAM.predictors[0])
    assert fitter.budget(PROGRAM.predictors[0]) < 512 - 8  # room for the answer


def test_the_context_window_comes_from_the_config_then_litellm_then_nothing(fake_lm_config):
    assert LM(fake_lm_config(context_window=777)).context_window() == 777
    assert LM(fake_lm_config()).context_window() is None  # a self-hosted model litellm does not know
    known = LM(LMConfig(model="openai/gpt-4o-mini"))
    assert known.context_window() and known.context_window() >= 16_000
    assert known.token_estimator == "litellm"
    assert 0 < known.count_tokens("hello world") <= 4


def test_unknown_window_changes_nothing(support_program, support_data, fake_server, fake_lm_config):
    fake_server.responder = SimulatedClassifier()
    result = MIPRO(choice_match, LM(fake_lm_config()), MIPROConfig(num_trials=2, max_demo_tokens=None)).compile(
        support_program, *support_data)
    assert not any(s.metadata for s in result.candidates.demo_sets["classify"])
    assert json.dumps(result.report(), default=str)


def test_a_token_budget_per_prompt_caps_every_prompt_of_the_search(support_program, support_data, fake_server,
                                                                   fake_lm_config):
    fake_server.responder = always_right
    lm = LM(fake_lm_config())  # context window unknown: only the budget limits prompts
    config = MIPROConfig(num_trials=3, labeled_only=True, max_prompt_tokens=400)
    result = MIPRO(choice_match, lm, config).compile(support_program, *support_data)
    classify = [b["prompt"] for b in fake_server.requests if b["prompt"].rstrip().endswith("Category:")]
    assert classify and all(lm.count_tokens(p) <= 400 for p in classify)
    fits = [s.metadata["fit"] for s in result.candidates.demo_sets["classify"] if s.metadata]
    assert fits and all(f["max_prompt_tokens"] == 400 and f["context_window"] is None for f in fits)
    assert all(t.prompt_tokens + t.completion_tokens == t.tokens for t in result.trials)


def test_chat_prompts_fit_the_window_too(support_program, support_data, fake_server, fake_lm_config):
    fake_server.responder = lambda prompt, request: "Category: billing"
    lm = LM(fake_lm_config(model="openai/fake", context_window=512, max_tokens=32))
    assert lm.is_chat
    MIPRO(choice_match, lm, MIPROConfig(num_trials=2, labeled_only=True)).compile(support_program, *support_data)
    chats = [b for b in fake_server.requests if "messages" in b]
    assert chats and any(len(b["messages"]) > 3 for b in chats), "some prompts carry demos"
    for body in chats:
        text = "\n".join(m["content"] for m in body["messages"])
        assert lm.count_tokens(text) + 4 * len(body["messages"]) + body.get("max_tokens", 32) <= 512


# --- the demos of a prompt have a token cap (input tokens are what a run costs) ---------------------------------


def test_the_demo_token_cap_keeps_the_longest_balanced_prefix(fake_lm_config):
    lm = LM(fake_lm_config())  # no window: only the cap limits demos
    short = [{"ticket": "short ticket", "category": c} for c in ("billing", "refund")] * 4
    long = [{"ticket": "a long ticket " * 20, "category": c} for c in ("billing", "refund")]
    demos = [*short[:4], *long, *short[4:]]
    predictor = PROGRAM.predictors[0]
    measure = PromptFitter.for_program(PROGRAM, EXAMPLES, lm, max_demo_tokens=1000)
    cap = measure.demo_tokens(predictor, [*short[:4], long[0]])
    fitter = PromptFitter.for_program(PROGRAM, EXAMPLES, lm, max_demo_tokens=cap)
    kept = fitter.fit(predictor, demos)
    assert kept == [*short[:4], long[0]], "demos are kept in order until the cap; the count is cut, not the length"
    assert fitter.demo_tokens(predictor, kept) <= cap < fitter.demo_tokens(predictor, demos[:6])
    assert fitter.fit(predictor, short) == short, "a set within the cap is unchanged"
    smaller = PromptFitter.for_program(PROGRAM, EXAMPLES, lm, max_demo_tokens=cap // 4).fit(predictor, short)
    counts = Counter(d["category"] for d in smaller)
    assert 0 < len(smaller) < len(short) and max(counts.values()) - min(counts.values()) <= 1


def test_the_context_window_drops_the_longest_demos_first(fake_lm_config):
    lm = LM(fake_lm_config(context_window=400, max_tokens=16))  # no demo cap: only the window limits demos
    short = [{"ticket": "short ticket", "category": c} for c in ("billing", "refund")] * 4
    long = [{"ticket": "a long ticket " * 20, "category": c} for c in ("billing", "refund")]
    fitter = PromptFitter.for_program(PROGRAM, EXAMPLES, lm)
    predictor = PROGRAM.predictors[0]
    kept = fitter.fit(predictor, [*short[:4], *long, *short[4:]])
    assert kept == short, "the two long demos go first, one per class; order kept"
    assert fitter.prompt_tokens(predictor, kept) <= fitter.budget(predictor)


def test_the_default_demo_cap_keeps_short_demo_sets_and_cuts_long_ones(support_program, support_data, fake_server,
                                                                       fake_lm_config):
    fake_server.responder = always_right
    lm = LM(fake_lm_config())
    train, val = support_data
    padded = [Example({"ticket": e.inputs["ticket"] + " " + "and more words about it " * 8}, e.labels)
              for e in train]
    short_run = MIPRO(choice_match, lm, MIPROConfig(num_trials=1, labeled_only=True)).compile(
        support_program, train, val)
    long_run = MIPRO(choice_match, lm, MIPROConfig(num_trials=1, labeled_only=True)).compile(
        support_program, padded, val)
    short_sizes = [len(s.demos) for s in short_run.candidates.demo_sets["classify"][1:]]
    long_sets = long_run.candidates.demo_sets["classify"][1:]
    assert max(short_sizes) >= 18, "the demo data's 100-character tickets keep most of the 27 demos"
    assert all(s.metadata["fit"]["max_demo_tokens"] == MIPROConfig().max_demo_tokens for s in long_sets)
    assert max(len(s.demos) for s in long_sets) < max(short_sizes), "long tickets: fewer demos per prompt"


def test_a_demo_cap_below_one_token_is_refused():
    with pytest.raises(ValueError, match="max_demo_tokens >= 1"):
        MIPROConfig(max_demo_tokens=0)
