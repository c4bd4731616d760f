"""Metrics by name through entry points (a real distribution on sys.path), and the LM judge with its verdicts."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from optimizer import (
    LM,
    Budget,
    BudgetExceeded,
    Example,
    JudgeMetric,
    Judgement,
    MetricError,
    Predict,
    Program,
    evaluate,
    Usage,
    choice_match,
    metric_calls_per_example,
    metric_names,
    metric_spending_from,
    metric_usage,
    parse_judgement,
    resolve_metric,
)
from optimizer.execution import Prediction
from optimizer.metrics import ENTRY_POINT_GROUP

PROGRAM = Program("t", (Predict("classify", "ticket -> category: choice[billing|refund]", instructions="Route."),))


@pytest.fixture
def team_distribution(tmp_path, monkeypatch):
    """An installed distribution 'team-metrics' (a dist-info folder on sys.path) registering two metrics by
    name: `lenient` (a function) and `broken` (a module that does not import)."""
    (tmp_path / "team_metrics.py").write_text(textwrap.dedent("""
        def lenient(example, prediction):
            return 0.25
    """))
    info = tmp_path / "team_metrics-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: team-metrics\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nlenient = team_metrics:lenient\n"
                                           "broken = team_metrics_missing:judge\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("team_metrics", None)


def test_a_metric_registered_by_an_installed_distribution_resolves_by_name(team_distribution):
    assert resolve_metric("lenient")(None, None) == 0.25
    names = metric_names()
    assert names[:4] == ["exact", "choice", "f1", "judge"] and {"lenient", "broken"} <= set(names)
    with pytest.raises(MetricError, match=r"metric 'broken' \(team_metrics_missing:judge\) cannot be loaded: "
                                          r"ModuleNotFoundError"):
        resolve_metric("broken")


def test_unregistered_names_and_module_references_keep_their_meaning(team_distribution):
    assert resolve_metric("team_metrics:lenient")(None, None) == 0.25  # the "module:function" form still works
    assert "lenient" not in metric_names() or "accuracy" not in metric_names()
    with pytest.raises(MetricError, match="unknown metric 'accuracy'; use one of exact, choice, f1, judge"):
        resolve_metric("accuracy")


@pytest.mark.parametrize(("reply", "verdict", "reason"), [
    ("Verdict: pass\nReason: the same category as expected.", "pass", "the same category as expected."),
    (" fail\nReason: says refund where billing is expected", "fail", "says refund where billing is expected"),
    ("Verdict: **FAIL** because the label differs", "fail", "because the label differs"),
    ("verdict = Correct\nreasoning: matches", "pass", "matches"),
    ("No. The answer names another team.", "fail", "The answer names another team."),
])
def test_judge_replies_parse_to_a_verdict_and_a_reason(reply, verdict, reason):
    judgement = parse_judgement(reply)
    assert (judgement.verdict, judgement.reason) == (verdict, reason)
    assert float(judgement) == (1.0 if verdict == "pass" else 0.0)


@pytest.mark.parametrize("reply", ["maybe, hard to say", "", "Verdict: unsure\nReason: ambiguous"])
def test_a_reply_without_a_verdict_is_an_error_not_a_score(reply):
    with pytest.raises(MetricError, match="has no verdict"):
        parse_judgement(reply)


def test_judgement_scores_stay_in_range():
    with pytest.raises(ValueError, match="0 <= score <= 1"):
        Judgement(1.5, "pass")


def _grader(prompt: str, request: dict) -> str:
    """The fake judge: passes an answer equal to the expected one, and says why."""
    if "Verdict:" not in prompt:  # the program's own call
        ticket = prompt.rsplit("Ticket: ", 1)[1].split("\n", 1)[0]
        return {"a": " billing\n", "b": " refund\n", "c": " gibberish\n"}[ticket]
    expected = prompt.split("Expected answer:\ncategory: ", 1)[1].split("\n", 1)[0]
    got = prompt.split("Program's answer:\ncategory: ", 1)[1].split("\n", 1)[0]
    if expected == got:
        return f" pass\nReason: {got} is the expected team."
    return f" fail\nReason: {got} is not {expected}."


def test_judge_metric_scores_an_evaluation_and_keeps_verdicts_and_reasons(fake_server, fake_lm_config):
    fake_server.responder = _grader
    judge = JudgeMetric("The category must be the expected one.", lm_config=fake_lm_config(cache_path=None))
    examples = [Example({"ticket": t}, {"category": c}) for t, c in [("a", "billing"), ("b", "billing"),
                                                                      ("c", "refund")]]
    result = evaluate(PROGRAM, examples, judge, LM(fake_lm_config()))
    assert [r.score for r in result.results] == [1.0, 0.0, 0.0]
    assert result.results[0].feedback == {"verdict": "pass", "reason": "billing is the expected team."}
    assert result.results[1].feedback == {"verdict": "fail", "reason": "refund is not billing."}
    # the unparsable answer is judged without asking the judge: the program gave nothing to judge
    assert result.results[2].feedback["verdict"] == "fail"
    assert result.results[2].feedback["reason"].startswith("no answer to judge:")
    assert metric_usage(judge).calls == 2 == judge.usage().calls  # what callers add to the evaluation's spending
    assert metric_usage(choice_match) == Usage.zero()
    judge_prompts = [r["prompt"] for r in fake_server.requests if "Verdict:" in str(r.get("prompt"))]
    assert len(judge_prompts) == 2 and all("Rubric: The category must be the expected one." in p
                                           for p in judge_prompts)


def test_judge_model_defaults_to_the_local_model_and_reads_the_environment(monkeypatch, fake_server):
    monkeypatch.delenv("OPTIMIZER_JUDGE_MODEL", raising=False)
    assert "local/gemma-3-270m" in repr(resolve_metric("judge"))
    monkeypatch.setenv("OPTIMIZER_JUDGE_MODEL", "text-completion-openai/fake")
    monkeypatch.setenv("OPTIMIZER_JUDGE_API_BASE", fake_server.url)
    monkeypatch.setenv("OPTIMIZER_JUDGE_API_KEY", "x")
    judge = resolve_metric("judge")
    assert judge.lm.config.model == "text-completion-openai/fake" and judge.lm.config.api_base == fake_server.url
    fake_server.responder = lambda prompt, request: " pass\nReason: fine."
    verdict = judge(Example({"ticket": "a"}, {"category": "billing"}), Prediction({"category": "billing"}))
    assert verdict == Judgement(1.0, "pass", "fine.")


def test_a_judge_reply_without_verdict_becomes_the_examples_metric_error(fake_server, fake_lm_config):
    fake_server.responder = lambda prompt, request: " billing\n" if "Verdict:" not in prompt else " hmm\n"
    judge = JudgeMetric(lm_config=fake_lm_config(cache_path=None))
    result = evaluate(PROGRAM, [Example({"ticket": "a"}, {"category": "billing"})], judge, LM(fake_lm_config()))
    assert result.results[0].score == 0.0 and result.results[0].error_kind == "metric"
    assert "has no verdict" in result.results[0].error and result.results[0].feedback == {}


def test_a_judge_spending_from_a_task_lm_stays_within_its_budget(fake_server, fake_lm_config):
    fake_server.responder = _grader
    task = LM(fake_lm_config(cache_path=None), Budget(max_calls=3))
    judge = JudgeMetric("The category must be the expected one.", lm_config=fake_lm_config(cache_path=None))
    wrapped = []
    bound = metric_spending_from(judge, task, wrap=lambda lm: wrapped.append(lm) or lm)
    assert bound is not judge and bound.rubric == judge.rubric and bound.lm is wrapped[0]
    assert bound.lm.config == judge.lm.config and bound.lm.shared_budget is task.shared_budget
    assert metric_calls_per_example(bound) == 1 and metric_calls_per_example(choice_match) == 0
    assert metric_spending_from(choice_match, task) is choice_match, "a metric without a model is unchanged"
    examples = [Example({"ticket": t}, {"category": "billing"}) for t in ("a", "b")]
    with pytest.raises(BudgetExceeded):  # 2 answers and 2 verdicts do not fit 3 calls
        evaluate(PROGRAM, examples, bound, task)
    assert len(fake_server.requests) == 3 and task.usage().calls + bound.usage().calls == 3
