"""LM-as-judge: a metric that asks a language model whether an answer meets a rubric, with a verdict and a reason.

The judge sees the example's inputs, the expected outputs and the program's answer, and replies on two lines::

    Verdict: pass
    Reason: the answer names the same category as the expected one.

"pass" scores 1.0 and "fail" 0.0; the verdict and the reason travel with the score as a `Judgement`, so an
evaluation can show reviewers why each example passed or failed. A reply with no recognisable verdict raises
`MetricError` (the evaluation records it as that example's metric error: never a silent pass or fail).

The judge's model is configurable (`JudgeMetric(lm_config=...)`, or the environment for the built-in "judge":
OPTIMIZER_JUDGE_MODEL, OPTIMIZER_JUDGE_API_BASE, OPTIMIZER_JUDGE_API_KEY); by default it is the local model.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optimizer.data import Example
from optimizer.errors import MetricError
from optimizer.execution import Prediction
from optimizer.lm import LM, LMConfig, Usage

DEFAULT_JUDGE_MODEL = "local/gemma-3-270m"
DEFAULT_RUBRIC = ("The answer is correct when it means the same as the expected answer; wording, case and "
                  "punctuation do not matter.")
MAX_REASON = 500
_PASS = {"pass", "passed", "yes", "correct", "right", "true"}
_FAIL = {"fail", "failed", "no", "incorrect", "wrong", "false"}
_VERDICT = re.compile(r"verdict\s*[:=\-]\s*[*_\"'`]*\s*([a-z]+)", re.IGNORECASE)
_REASON = re.compile(r"reason(?:ing)?\s*[:=\-]\s*(.+)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Judgement:
    """A score with the reasons behind it: what an LM judge (or any metric that explains itself) returns.

    `float(judgement)` is its score, so it works wherever a metric's float does.
    """

    score: float
    verdict: str
    reason: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"`0 <= score <= 1` must hold, but got ({self.score=}).")

    def __float__(self) -> float:
        return float(self.score)

    def to_dict(self) -> dict[str, str]:
        return {"verdict": self.verdict, "reason": self.reason}


def parse_judgement(text: str) -> Judgement:
    """The judge's reply as a Judgement: "Verdict: pass|fail" (or a bare verdict word first) and "Reason: ...".

    Raises:
        MetricError: no verdict can be read from the reply.
    """
    word = _verdict_word(text)
    if word in _PASS:
        verdict, score = "pass", 1.0
    elif word in _FAIL:
        verdict, score = "fail", 0.0
    else:
        raise MetricError(f"the judge's reply has no verdict (pass or fail): {text.strip()[:200]!r}")
    return Judgement(score, verdict, _reason(text))


def _verdict_word(text: str) -> str:
    found = _VERDICT.search(text)
    if found is not None:
        return found.group(1).lower()
    first = re.match(r"\W*([A-Za-z]+)", text)
    return first.group(1).lower() if first else ""


def _reason(text: str) -> str:
    found = _REASON.search(text)
    if found is not None:
        reason = found.group(1)
    else:  # no "Reason:" line: whatever follows the verdict
        reason = _VERDICT.sub("", text, count=1) if _VERDICT.search(text) else re.sub(r"^\W*[A-Za-z]+", "", text)
    reason = " ".join(reason.split()).lstrip(" :-.,;*_`\"'").rstrip(" :-*_`\"'")
    return reason[:MAX_REASON]


def judge_prompt(rubric: str, example: Example, prediction: Prediction) -> str:
    """The text the judge completes; it ends with "Verdict:" so a base model only has to continue it."""
    def lines(values: dict[str, Any]) -> str:
        return "\n".join(f"{name}: {value}" for name, value in values.items()) or "(none)"

    answer = {name: prediction.outputs.get(name, "") for name in example.labels} or dict(prediction.outputs)
    return (f"You grade a program's answer against a rubric.\nRubric: {rubric.strip()}\n\n"
            f"Input:\n{lines(example.inputs)}\n\nExpected answer:\n{lines(example.labels)}\n\n"
            f"Program's answer:\n{lines(answer)}\n\n"
            "Reply with two lines: \"Verdict: pass\" or \"Verdict: fail\", then \"Reason:\" and one sentence.\n"
            "Verdict:")


class JudgeMetric:
    """A metric `(example, prediction) -> Judgement` that asks an LM to grade the answer against `rubric`.

    Args:
        rubric: What a passing answer is, in plain words.
        lm_config: The judge's model; None means the local model (DEFAULT_JUDGE_MODEL).
        lm: An LM to use as it is (tests, or sharing a client); takes precedence over `lm_config`.
        max_tokens: Cap on the judge's reply.

    The LM is created on first use, once, and shared by the threads of an evaluation (LM is thread-safe).
    `spending_from(lm)` gives a judge whose model spends from another LM's budget, so a run's caps bound the
    judge's calls too.
    """

    calls_per_example = 1  # one verdict per scored example: budgets plan for it (metrics.metric_calls_per_example)

    def __init__(self, rubric: str = DEFAULT_RUBRIC, *, lm_config: LMConfig | None = None, lm: LM | None = None,
                 max_tokens: int = 96) -> None:
        if not rubric.strip():
            raise ValueError("`rubric` must say what a passing answer is, but got an empty string.")
        self.rubric = rubric
        self.lm_config = lm_config
        self.max_tokens = max_tokens
        self._lm = lm
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        model = self._lm.config.model if self._lm is not None else (self.lm_config or _default_config()).model
        return f"JudgeMetric(model={model!r}, rubric={self.rubric[:40]!r})"

    @property
    def lm(self) -> LM:
        with self._lock:
            if self._lm is None:
                self._lm = LM(self.lm_config or _default_config())
            return self._lm

    def spending_from(self, lm: Any, *, wrap: Callable[[LM], Any] | None = None) -> JudgeMetric:
        """This judge (same rubric and model) with an LM of its own that spends from `lm`'s budget
        (`lm.shared_budget`): together they stay within its caps. `wrap` decorates the judge's LM (a caller's
        stop check or failure guard)."""
        config = self._lm.config if self._lm is not None else (self.lm_config or _default_config())
        judge = LM(config, lm.shared_budget)
        return JudgeMetric(self.rubric, lm_config=config, lm=wrap(judge) if wrap else judge,
                           max_tokens=self.max_tokens)

    def usage(self) -> Usage:
        """What the judge's own LM has spent so far (callers add it to the spending of what they evaluate)."""
        with self._lock:
            return self._lm.usage() if self._lm is not None else Usage.zero()

    def __call__(self, example: Example, prediction: Prediction) -> Judgement:
        if not prediction.ok:
            return Judgement(0.0, "fail", f"no answer to judge: {prediction.error}"[:MAX_REASON])
        reply = self.lm.complete(judge_prompt(self.rubric, example, prediction), max_tokens=self.max_tokens,
                                 temperature=0.0)
        return parse_judgement(reply.text if reply.text.lower().lstrip().startswith("verdict")
                               else f"Verdict: {reply.text}")


def _default_config() -> LMConfig:
    return LMConfig(model=os.environ.get("OPTIMIZER_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL,
                    api_base=os.environ.get("OPTIMIZER_JUDGE_API_BASE") or None,
                    api_key=os.environ.get("OPTIMIZER_JUDGE_API_KEY") or None, temperature=0.0)


def default_judge() -> JudgeMetric:
    """The built-in "judge" metric: the default rubric, the model from the environment or the local one."""
    return JudgeMetric()
