"""Metrics: `(example, prediction) -> score` in [0, 1]. Built-ins by name, names registered by installed packages
(entry points), or any `module:function`.

A score is a float, or anything `float()` accepts: an LM judge returns a `Judgement` (score, verdict, reason),
which evaluations keep next to the score (see `optimizer.evaluation.run_metric`).

Registering a metric without forking: a package declares an entry point in the group `prompt_governance.metrics`,
e.g. in its pyproject.toml::

    [project.entry-points."prompt_governance.metrics"]
    tone = "myteam.metrics:tone_judge"

and `resolve_metric("tone")` loads `myteam.metrics.tone_judge` (a function or a callable object).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import string
from collections import Counter
from collections.abc import Callable
from typing import Any, SupportsFloat

from optimizer.adapters import normalize_choice
from optimizer.data import Example
from optimizer.errors import MetricError
from optimizer.execution import Prediction
from optimizer.judge import default_judge
from optimizer.lm import Usage

Metric = Callable[[Example, Prediction], SupportsFloat]
ENTRY_POINT_GROUP = "prompt_governance.metrics"


def _label_pairs(example: Example, prediction: Prediction) -> list[tuple[Any, Any]]:
    return [(expected, prediction.outputs.get(name)) for name, expected in example.labels.items()]


def exact_match(example: Example, prediction: Prediction) -> float:
    """1.0 when every labeled output equals the prediction after stripping whitespace."""
    if not prediction.ok or not example.labels:
        return 0.0
    pairs = _label_pairs(example, prediction)
    return float(all(got is not None and str(got).strip() == str(want).strip() for want, got in pairs))


def choice_match(example: Example, prediction: Prediction) -> float:
    """Like exact match, ignoring case, surrounding quotes and trailing punctuation."""
    if not prediction.ok or not example.labels:
        return 0.0
    pairs = _label_pairs(example, prediction)
    return float(all(got is not None and normalize_choice(str(got)) == normalize_choice(str(want))
                     for want, got in pairs))


def _tokens(text: str) -> list[str]:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(example: Example, prediction: Prediction) -> float:
    """SQuAD-style token F1 averaged over the labeled outputs."""
    if not prediction.ok or not example.labels:
        return 0.0
    scores = [_f1(str(want), str(got or "")) for want, got in _label_pairs(example, prediction)]
    return sum(scores) / len(scores)


def _f1(expected: str, got: str) -> float:
    want, have = _tokens(expected), _tokens(got)
    common = sum((Counter(want) & Counter(have)).values())
    if not want or not have or common == 0:
        return float(want == have)
    precision, recall = common / len(have), common / len(want)
    return 2 * precision * recall / (precision + recall)


BUILTIN_METRICS: dict[str, Metric] = {"exact": exact_match, "choice": choice_match, "f1": token_f1}
# Built-ins made fresh for each use: a judge holds its own LM client, configured when it is made.
BUILTIN_FACTORIES: dict[str, Callable[[], Metric]] = {"judge": default_judge}


def registered_metrics() -> dict[str, importlib.metadata.EntryPoint]:
    """Metrics installed packages register in the `prompt_governance.metrics` entry-point group, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def metric_names() -> list[str]:
    """Every metric name `resolve_metric` knows without a `module:function` reference, built-ins first."""
    builtin = [*BUILTIN_METRICS, *BUILTIN_FACTORIES]
    return [*builtin, *sorted(set(registered_metrics()) - set(builtin))]


def metric_usage(metric: Metric) -> Usage:
    """What a metric with an LM of its own (a judge: anything with a `usage()` method) has spent so far; zero for
    metrics that call no model."""
    usage = getattr(metric, "usage", None)
    return usage() if callable(usage) else Usage.zero()


def metric_calls_per_example(metric: Metric) -> int:
    """LM calls a metric makes per scored example (a judge's `calls_per_example`; 0 for metrics that call no
    model), so a budget can plan for them."""
    return int(getattr(metric, "calls_per_example", 0))


def metric_spending_from(metric: Metric, lm: Any, *, wrap: Callable[[Any], Any] | None = None) -> Metric:
    """`metric` with its own model (a judge: anything with `spending_from`) spending from `lm`'s budget, so the
    caps of a run or an evaluation hold for the metric's calls too; other metrics are returned as they are."""
    spending_from = getattr(metric, "spending_from", None)
    return spending_from(lm, wrap=wrap) if callable(spending_from) else metric


def resolve_metric(name: str) -> Metric:
    """`exact`, `choice`, `f1`, `judge` (the LM judge with the default rubric), a name registered through entry points, or `package.module:function`."""
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    if name in BUILTIN_FACTORIES:
        return BUILTIN_FACTORIES[name]()
    registered = registered_metrics().get(name)
    if registered is not None:
        return _load_entry_point(registered)
    if ":" not in name:
        raise MetricError(f"unknown metric {name!r}; use one of {', '.join(metric_names())} or module:function")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MetricError(f"metric {name!r}: cannot import module {module_name!r} ({exc})") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise MetricError(f"metric {name!r}: {module_name} has no function {attr!r}")
    return function


def _load_entry_point(entry_point: importlib.metadata.EntryPoint) -> Metric:
    try:
        metric = entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in package may raise anything on import
        raise MetricError(f"metric {entry_point.name!r} ({entry_point.value}) cannot be loaded: "
                          f"{type(exc).__name__}: {exc}") from None
    if not callable(metric):
        raise MetricError(f"metric {entry_point.name!r} ({entry_point.value}) is not callable")
    return metric
