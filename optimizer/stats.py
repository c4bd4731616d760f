"""Paired comparison of two programs scored on the same examples: is the candidate better than chance?

For 0/1 scores the exact one-sided McNemar test (a binomial test on the discordant pairs: examples only one of
the two gets right); for graded scores (token F1, judges) a one-sided paired sign-flip permutation test on the
per-example differences. Both come with a paired bootstrap 95% interval for the mean difference. Seeded, so the
same scores always give the same figures.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_ALPHA = 0.05
_RESAMPLES = 2000


@dataclass(frozen=True)
class PairedComparison:
    """Candidate vs baseline on the same examples. `p_value` is one-sided: the chance of a gain at least this
    large if the two were equally good."""

    examples: int
    candidate_mean: float
    baseline_mean: float
    wins: int
    losses: int
    ties: int
    p_value: float
    method: str
    ci_low: float
    ci_high: float
    alpha: float

    @property
    def delta(self) -> float:
        return self.candidate_mean - self.baseline_mean

    @property
    def significant_gain(self) -> bool:
        """The candidate is better and the gain is unlikely to be chance."""
        return self.delta > 0 and self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta, "significant_gain": self.significant_gain}


def compare_paired(candidate: Sequence[float], baseline: Sequence[float], *, alpha: float = DEFAULT_ALPHA,
                   seed: int = 0) -> PairedComparison:
    """Compare per-example scores of two programs on the same examples, in the same order.

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(candidate) != len(baseline):
        raise ValueError(f"paired scores need the same examples, but got {len(candidate)} and {len(baseline)}")
    if not candidate:
        raise ValueError("paired scores need at least one example")
    diffs = [float(c) - float(b) for c, b in zip(candidate, baseline)]
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    binary = all(float(v) in (0.0, 1.0) for v in (*candidate, *baseline))
    rng = random.Random(seed)
    if binary:
        p_value, method = mcnemar_one_sided(wins, losses), "exact McNemar (one-sided)"
    else:
        p_value, method = sign_flip_p_value(diffs, rng), "paired sign-flip permutation (one-sided)"
    low, high = bootstrap_interval(diffs, rng)
    n = len(diffs)
    return PairedComparison(examples=n, candidate_mean=sum(map(float, candidate)) / n,
                            baseline_mean=sum(map(float, baseline)) / n, wins=wins, losses=losses,
                            ties=n - wins - losses, p_value=p_value, method=method, ci_low=low, ci_high=high,
                            alpha=alpha)


def paired_standard_error(a: Sequence[float], b: Sequence[float]) -> float:
    """The standard error of the mean per-example difference of two score lists on the same examples (0 for
    fewer than two): the noise two configurations do not share."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return 0.0
    mean = sum(diffs) / len(diffs)
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))


def mcnemar_one_sided(wins: int, losses: int) -> float:
    """P(X >= wins) for X ~ Binomial(wins + losses, 1/2): 1.0 when nothing differs."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(wins, n + 1))
    return min(1.0, tail / 2 ** n)


def sign_flip_p_value(diffs: Sequence[float], rng: random.Random, resamples: int = _RESAMPLES) -> float:
    """Share of random sign flips whose mean is at least the observed mean (with the +1 correction)."""
    observed = sum(diffs)
    if observed <= 0:
        return 1.0
    hits = sum(1 for _ in range(resamples)
               if sum(d if rng.random() < 0.5 else -d for d in diffs) >= observed - 1e-12)
    return (hits + 1) / (resamples + 1)


def bootstrap_interval(diffs: Sequence[float], rng: random.Random, resamples: int = _RESAMPLES,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean paired difference."""
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    cut = (1 - level) / 2
    return means[int(cut * (resamples - 1))], means[int((1 - cut) * (resamples - 1))]
