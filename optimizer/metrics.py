"""Metrics: `(example, prediction) -> float` in [0, 1]. Built-ins by name, or any `module:function`."""

from __future__ import annotations

import importlib
import re
import string
from collections import Counter
from collections.abc import Callable
from typing import Any

from optimizer.adapters import normalize_choice
from optimizer.data import Example
from optimizer.errors import MetricError
from optimizer.execution import Prediction

Metric = Callable[[Example, Prediction], float]


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


def resolve_metric(name: str) -> Metric:
    """`exact`, `choice`, `f1`, or `package.module:function`."""
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    if ":" not in name:
        raise MetricError(f"unknown metric {name!r}; use one of {', '.join(BUILTIN_METRICS)} or module:function")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MetricError(f"metric {name!r}: cannot import module {module_name!r} ({exc})") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise MetricError(f"metric {name!r}: {module_name} has no function {attr!r}")
    return function
