"""Phase 1: candidate demo sets per predictor.

Set 0 is the predictor's current demos (zero-shot for a fresh program), set 1 labeled examples balanced
across the output's choices, set 2 bootstrapped traces topped up with labeled examples, sets 3.. random mixes
of varied size. Bootstrapping runs a teacher once over a shuffled slice of the trainset and keeps the trace
of every example the metric passes; all bootstrapped sets draw from that one pool, so extra sets cost no
extra LM calls (DSPy re-bootstraps for every set). Given a `PromptFitter`, the teacher's demos and every set
are cut to the model's context window (optimizer.fitting).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optimizer.adapters import usable_demo
from optimizer.data import Example
from optimizer.evaluation import score_prediction
from optimizer.execution import run_program
from optimizer.metrics import Metric
from optimizer.program import Demo, Predictor, Program

if TYPE_CHECKING:
    from optimizer.fitting import PromptFitter
    from optimizer.lm import LM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSet:
    """An ordered list of demos for one predictor, where it came from, and what was done to it (e.g. "fit":
    demos dropped to fit the context window)."""

    demos: tuple[Demo, ...]
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"source": self.source, "demos": [dict(d) for d in self.demos]}
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoSet:
        return cls(tuple(data["demos"]), data["source"], dict(data.get("metadata") or {}))


@dataclass(frozen=True)
class BootstrapSettings:
    num_sets: int
    max_labeled: int
    max_bootstrapped: int
    labeled_only: bool = False
    zero_shot: bool = False
    max_teacher_examples: int = 60


@dataclass
class DemoPools:
    """Per predictor: labeled demos (from examples) and bootstrapped demos (from passing traces)."""

    labeled: dict[str, list[Demo]] = field(default_factory=dict)
    bootstrapped: dict[str, list[Demo]] = field(default_factory=dict)


def label_key(predictor: Predictor, demo: Demo) -> str:
    """The class of a demo for balancing: its first choice-typed output, else one bucket."""
    for f in predictor.signature.outputs:
        if f.type == "choice" and f.name in demo:
            return str(demo[f.name])
    return ""


def balanced_order(predictor: Predictor, demos: Sequence[Demo], rng: random.Random) -> list[Demo]:
    """Shuffle, then interleave classes round-robin so any prefix is balanced and classes alternate."""
    buckets: dict[str, list[Demo]] = defaultdict(list)
    shuffled = list(demos)
    rng.shuffle(shuffled)
    for demo in shuffled:
        buckets[label_key(predictor, demo)].append(demo)
    keys = sorted(buckets)
    rng.shuffle(keys)
    ordered: list[Demo] = []
    while any(buckets.values()):
        for key in keys:
            if buckets[key]:
                ordered.append(buckets[key].pop())
    return ordered


def labeled_pool(program: Program, trainset: Sequence[Example]) -> dict[str, list[Demo]]:
    """Examples usable directly as demos: only predictors whose fields all appear in the examples."""
    pools: dict[str, list[Demo]] = {}
    for predictor in program.predictors:
        records = [ex.as_record() for ex in trainset]
        pools[predictor.name] = [r for r in records if usable_demo(predictor.signature, r)]
    return pools


def bootstrap_pool(program: Program, trainset: Sequence[Example], metric: Metric, lm: LM,
                   settings: BootstrapSettings, rng: random.Random,
                   fitter: PromptFitter | None = None) -> dict[str, list[Demo]]:
    """Run a teacher (the program with balanced labeled demos, fitted to the context window when `fitter` is
    given) and keep the traces the metric passes."""
    labeled = labeled_pool(program, trainset)
    teacher_demos = {p.name: balanced_order(p, labeled[p.name], rng)[:settings.max_labeled]
                     for p in program.predictors if labeled[p.name]}
    if fitter is not None:
        teacher_demos = {name: fitter.fit(program.predictor(name), demos) for name, demos in teacher_demos.items()}
    teacher = program.with_choices({}, teacher_demos)
    candidates = list(trainset)
    rng.shuffle(candidates)
    wanted = settings.max_bootstrapped * 2  # enough for a few distinct bootstrapped sets, at little cost
    pool: dict[str, list[Demo]] = {p.name: [] for p in program.predictors}
    batch = max(4, lm.config.max_concurrency)
    for start in range(0, min(len(candidates), settings.max_teacher_examples), batch):
        chunk = candidates[start:start + batch]
        _collect_traces(teacher, chunk, metric, lm, pool)
        if min(len(v) for v in pool.values()) >= wanted:
            break
    logger.info("bootstrapped demos per predictor: %s", {k: len(v) for k, v in pool.items()})
    return pool


def _collect_traces(teacher: Program, chunk: Sequence[Example], metric: Metric, lm: LM,
                    pool: dict[str, list[Demo]]) -> None:
    def run(example: Example) -> tuple[Example, Any]:
        # Leave the example out of its own teacher demos, or the teacher just copies the answer.
        key = example.key()
        student = teacher.with_choices({}, {p.name: [d for d in p.demos if _demo_key(p, d) != key]
                                            for p in teacher.predictors})
        return example, run_program(student, example.inputs, lm)

    for example, prediction in lm.map(run, list(chunk)):
        score, _ = score_prediction(metric, example, prediction)
        if score >= 1.0 and prediction.ok:
            for step in prediction.trace:
                pool[step.predictor].append({**step.inputs, **step.outputs, "augmented": True})


def _demo_key(predictor: Predictor, demo: Demo) -> str:
    return json.dumps({n: demo.get(n) for n in predictor.signature.input_names}, sort_keys=True, ensure_ascii=False)


def build_demo_sets(program: Program, trainset: Sequence[Example], metric: Metric, lm: LM,
                    settings: BootstrapSettings, seed: int,
                    fitter: PromptFitter | None = None) -> dict[str, list[DemoSet]]:
    """The candidate demo sets for every predictor (identical for identical inputs and seed), each cut to the
    context window when `fitter` is given."""
    rng = random.Random(seed)
    if settings.zero_shot:
        sets = {p.name: [DemoSet(p.demos, "current")] for p in program.predictors}
    else:
        labeled = labeled_pool(program, trainset)
        boot: dict[str, list[Demo]] = {p.name: [] for p in program.predictors}
        if not settings.labeled_only and settings.max_bootstrapped > 0:
            boot = bootstrap_pool(program, trainset, metric, lm, settings, rng, fitter)
        sets = {p.name: _sets_for(p, labeled[p.name], boot[p.name], settings, rng) for p in program.predictors}
    return fitter.fit_sets(program, sets) if fitter is not None else sets


def _sets_for(predictor: Predictor, labeled: list[Demo], boot: list[Demo], settings: BootstrapSettings,
              rng: random.Random) -> list[DemoSet]:
    sets = [DemoSet(predictor.demos, "current")]
    if labeled:
        sets.append(DemoSet(tuple(balanced_order(predictor, labeled, rng)[:settings.max_labeled]), "labeled"))
    if boot:
        top_up = balanced_order(predictor, labeled, rng)[:max(0, settings.max_labeled - settings.max_bootstrapped)]
        sets.append(DemoSet(tuple(boot[:settings.max_bootstrapped] + top_up), "bootstrapped"))
    attempts = 0
    while len(sets) < settings.num_sets and (labeled or boot) and attempts < settings.num_sets * 4:
        attempts += 1
        sets.append(_random_set(predictor, labeled, boot, settings, rng))
        if sets[-1].demos in [s.demos for s in sets[:-1]]:
            sets.pop()
    return sets


def _random_set(predictor: Predictor, labeled: list[Demo], boot: list[Demo], settings: BootstrapSettings,
                rng: random.Random) -> DemoSet:
    n_boot = rng.randint(1, min(settings.max_bootstrapped, len(boot))) if boot else 0
    chosen_boot = rng.sample(boot, n_boot) if n_boot else []
    rest = balanced_order(predictor, labeled, rng)[:max(0, settings.max_labeled - n_boot)]
    source = "random-bootstrapped" if chosen_boot else "random-labeled"
    return DemoSet(tuple(balanced_order(predictor, chosen_boot + rest, rng)), source)
