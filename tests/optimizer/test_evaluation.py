import sys
import textwrap

import pytest

from optimizer import LM, Example, MetricError, Predict, Program, evaluate, resolve_metric
from optimizer.execution import Prediction
from optimizer.metrics import choice_match, exact_match, token_f1

PROGRAM = Program("t", (Predict("classify", "ticket -> category: choice[billing|refund]", instructions="Route."),))


def test_evaluation_keeps_every_result_and_failed_predictions_never_raise(fake_server, fake_lm_config):
    answers = {"a": " billing\n", "b": " refund\n", "c": " gibberish\n"}
    fake_server.responder = lambda prompt, request: answers[prompt.rsplit("Ticket: ", 1)[1][0]]
    examples = [Example({"ticket": t}, {"category": c}) for t, c in [("a", "billing"), ("b", "billing"), ("c", "refund")]]
    result = evaluate(PROGRAM, examples, choice_match, LM(fake_lm_config()))
    assert [r.score for r in result.results] == [1.0, 0.0, 0.0]
    assert result.score == pytest.approx(1 / 3)
    failed = result.results[2]
    assert failed.error and "not one of billing, refund" in failed.error
    assert failed.prediction.raw.strip() == "gibberish"
    assert [r.index for r in result.failures] == [1, 2]


def test_metric_exception_is_recorded_not_raised(fake_server, fake_lm_config):
    def broken(example, prediction):
        raise RuntimeError("boom")

    result = evaluate(PROGRAM, [Example({"ticket": "a"}, {"category": "billing"})], broken, LM(fake_lm_config()))
    assert result.score == 0.0 and "metric error: RuntimeError: boom" in result.results[0].error


def test_builtin_metrics():
    example = Example({"q": "x"}, {"answer": "The Eiffel Tower"})
    assert exact_match(example, Prediction({"answer": " The Eiffel Tower "})) == 1.0
    assert choice_match(example, Prediction({"answer": "the eiffel tower."})) == 1.0
    assert token_f1(example, Prediction({"answer": "Eiffel Tower in Paris"})) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert exact_match(example, Prediction({}, error="failed")) == 0.0


def test_custom_metric_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_metrics.py").write_text(textwrap.dedent("""
        def lenient(example, prediction):
            return 0.5
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_metric("my_metrics:lenient")(None, None) == 0.5
    with pytest.raises(MetricError, match="unknown metric 'accuracy'"):
        resolve_metric("accuracy")
    with pytest.raises(MetricError, match="has no function 'missing'"):
        resolve_metric("my_metrics:missing")
    sys.modules.pop("my_metrics", None)
