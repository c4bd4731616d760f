"""Phase 3: MIPRO's Bayesian search over per-predictor (instruction, demo set, demo count) choices.

What differs from DSPy's MIPROv2, and why:
- Racing instead of a fresh random minibatch per trial: the validation set is shuffled once (seeded) and
  cut into rungs (e.g. 15, 40, all). A trial evaluates its configuration rung by rung, in small chunks, and
  stops as soon as it can no longer reach the bar of the best configuration at that rung. Hopeless
  configurations cost a handful of calls; promising ones reach the full set, which replaces DSPy's periodic
  full evaluation. Nested rungs also make scores comparable and every answer reusable through the cache.
- The number of demos is a search dimension (small base models gain most from demos, MIPRO.md).
- Instruction candidates are proposed after scoring the earlier ones and seeing the best one's failures.
- The study can live in an optuna storage URL: candidates are stored in the study, so a killed run resumes
  with the same candidates, stale trials are failed by optuna's heartbeat, and several processes can work on
  one study. Budget caps end the search cleanly with the best configuration found so far.
- Prompts fit the model: every demo set is cut to the context window (optimizer.fitting), and a model that
  fails `max_consecutive_failures` calls in a row ends the run with `ModelFailing` instead of being scored as
  a run of wrong answers; failed calls are counted per trial and per run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optimizer.bootstrap import BootstrapSettings, DemoSet, build_demo_sets
from optimizer.data import Example, split_train_val
from optimizer.errors import BudgetExceeded, LMUnreachableError, ModelFailing, OptimizerError, StopRequested
from optimizer.evaluation import ExampleResult, evaluate, evaluate_example
from optimizer.fitting import PromptFitter
from optimizer.metrics import Metric
from optimizer.program import Program, content_hash
from optimizer.proposal import (
    InstructionCandidate,
    ProposalContext,
    describe_program,
    propose_instruction,
    summarize_dataset,
)
from optimizer.stats import paired_standard_error

if TYPE_CHECKING:
    import optuna

    from optimizer.lm import LM, Usage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    num_candidates: int
    val_size: int
    num_trials: int
    rungs: tuple[int, ...]
    patience: int


# Estimated tokens (LM.count_tokens) of the demos in one prompt. Chosen on the tuning sets only: bitext's 27
# short demos (~25 estimated tokens each) must fit, sst2's 24 movie reviews (~42 each) are cut to about 19.
DEFAULT_MAX_DEMO_TOKENS = 800

PRESETS: dict[str, Preset] = {
    "light": Preset(num_candidates=6, val_size=60, num_trials=14, rungs=(10, 30), patience=5),
    "medium": Preset(num_candidates=12, val_size=300, num_trials=28, rungs=(20, 60, 150), patience=8),
    "heavy": Preset(num_candidates=18, val_size=1000, num_trials=45, rungs=(25, 100, 300), patience=12),
}


@dataclass(frozen=True)
class MIPROConfig:
    """Search settings; None fields take the preset's value.

    Attributes:
        preset: light, medium or heavy.
        seed: Seeds every random choice (splits, demo sets, proposals, TPE); same seed + cache = same result.
        num_trials: Sampled trials to complete (the enqueued prior configurations count toward it).
        num_demo_sets: Demo-set candidates per predictor (set 0 = current demos).
        num_instructions: Instruction candidates per predictor (candidate 0 = the original).
        max_labeled_demos: Largest demo set size.
        max_bootstrapped_demos: Bootstrapped (trace) demos per set; 0 disables bootstrapping.
        demo_counts: Allowed numbers of demos (prefixes of a set); default about 8, 16 and 24, rounded to whole
            rounds of the classes for a choice output (see demo_counts_for).
        zero_shot: Optimize instructions only; keep the current demos.
        labeled_only: No bootstrapping: demo sets from labeled examples only.
        storage: optuna storage URL (e.g. sqlite:///study.db, postgresql://...); None keeps the study in memory.
        study_name: Name of the study inside the storage (resume by reusing it).
        sampler_seed: Seed of TPE's own RNG; None uses `seed`. A process joining or resuming a shared study
            passes its own, or it would sample the same configurations as the process before it.
        patience: Stop once this many costly trials in a row (more calls than the first rung), after the prior
            configurations, found no better full-validation score; 0 never stops early. None takes the
            preset's (light 5).
        max_consecutive_failures: Stop the run with `ModelFailing` once this many LM calls in a row failed; None
            keeps each LM's own limit (`LMConfig.max_consecutive_failures`, default 10); 0 never stops.
        max_prompt_tokens: A token budget per prompt: demo sets are cut to it (longest demos first, classes kept
            balanced) as they are to the context window, trading demo count and length for input-token cost.
            Counted for the dataset's longest input and the longest instruction a candidate may have. None: only
            the context window limits prompts.
        max_demo_tokens: A token budget for the demos of one prompt (estimated as `LM.count_tokens` does): a
            demo set whose demos take more keeps its longest prefix within it (fewer demos of typical length;
            every prefix of a set is balanced). Input tokens are what a run costs; the default
            (DEFAULT_MAX_DEMO_TOKENS) keeps the 24-27 short demos the tuning sets' best configurations use and
            cuts sets of long texts (about 8 demos of a 230-character news text). None: no cap.
        simplest_within_se: Choose the shortest prompt among the configurations within one paired standard
            error of the best validation score (the one-SE rule), not the best score itself. Off by default:
            on held-out ag_news seed 1 it chose a configuration that scored 48.0% on test where the best
            validation score's scored 67.5% (bench/findings.md); equal scores still prefer the shorter prompt.
    """

    preset: str = "light"
    seed: int = 0
    num_trials: int | None = None
    num_demo_sets: int | None = None
    num_instructions: int | None = None
    max_labeled_demos: int = 27
    max_bootstrapped_demos: int = 4
    demo_counts: tuple[int, ...] | None = None
    val_size: int | None = None
    rungs: tuple[int, ...] | None = None
    zero_shot: bool = False
    labeled_only: bool = False
    storage: str | None = None
    study_name: str | None = None
    sampler_seed: int | None = None
    patience: int | None = None
    max_consecutive_failures: int | None = None
    max_prompt_tokens: int | None = None
    max_demo_tokens: int | None = DEFAULT_MAX_DEMO_TOKENS
    simplest_within_se: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {', '.join(PRESETS)}")
        if self.max_labeled_demos < 0 or self.max_bootstrapped_demos < 0:
            raise ValueError("demo caps must be >= 0")
        if self.num_trials is not None and self.num_trials < 1:
            raise ValueError(f"`num_trials >= 1` must hold, but got {self.num_trials}")
        if self.patience is not None and self.patience < 0:
            raise ValueError(f"`patience >= 0` must hold, but got {self.patience}")
        if self.max_consecutive_failures is not None and self.max_consecutive_failures < 0:
            raise ValueError(f"`max_consecutive_failures >= 0` must hold, but got {self.max_consecutive_failures}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"`max_prompt_tokens >= 1` must hold, but got {self.max_prompt_tokens}")
        if self.max_demo_tokens is not None and self.max_demo_tokens < 1:
            raise ValueError(f"`max_demo_tokens >= 1` must hold, but got {self.max_demo_tokens}")

    @property
    def resolved(self) -> Preset:
        p = PRESETS[self.preset]
        return Preset(self.num_candidates_or(p.num_candidates), self.val_size or p.val_size,
                      self.num_trials or p.num_trials, self.rungs or p.rungs,
                      p.patience if self.patience is None else self.patience)

    def num_candidates_or(self, default: int) -> int:
        return self.num_demo_sets or default

    @property
    def instruction_count(self) -> int:
        n = self.num_instructions or max(2, self.resolved.num_candidates // 2)
        return n * 2 if self.zero_shot and not self.num_instructions else n

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["storage"] = "<set>" if self.storage else None
        return data


@dataclass(frozen=True)
class TrialRecord:
    """One trial, as reported to the callback and kept in the run result."""

    number: int
    params: dict[str, Any]
    state: str            # complete, pruned or failed
    score: float | None   # mean over the examples evaluated (the deepest rung reached)
    examples: int
    full_score: float | None
    is_full: bool
    calls: int
    cached_calls: int
    tokens: int
    cost_usd: float
    seconds: float
    best_score: float | None
    error: str | None = None
    failed_calls: int = 0  # LM calls of this trial that failed after their retries (their examples scored 0)
    prompt_tokens: int = 0  # `tokens` split: input tokens are what most APIs bill most for
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Candidates:
    """Everything the search chooses from, per predictor; stored in the study for resume."""

    instructions: dict[str, list[InstructionCandidate]]
    demo_sets: dict[str, list[DemoSet]]
    dataset_summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"instructions": {k: [c.to_dict() for c in v] for k, v in self.instructions.items()},
                "demo_sets": {k: [s.to_dict() for s in v] for k, v in self.demo_sets.items()},
                "dataset_summary": self.dataset_summary}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidates:
        return cls({k: [InstructionCandidate.from_dict(c) for c in v] for k, v in data["instructions"].items()},
                   {k: [DemoSet.from_dict(s) for s in v] for k, v in data["demo_sets"].items()},
                   data.get("dataset_summary", ""))


@dataclass(frozen=True)
class RunResult:
    """What compile() returns: the best program, its validation score, every trial and why it stopped."""

    program: Program
    best_score: float
    best_params: dict[str, Any]
    trials: tuple[TrialRecord, ...]
    candidates: Candidates
    stop_reason: str
    usage: Usage
    seconds: float
    study_name: str
    config: MIPROConfig
    valset_size: int
    # Set when the one-SE rule chose another configuration than the best validation score's.
    highest_scoring_params: dict[str, Any] | None = None
    highest_scoring_program: Program | None = None

    @property
    def failed_calls(self) -> int:
        """LM calls of the run that failed after their retries: each left an example without an answer."""
        return self.usage.failed_calls

    def report(self) -> dict[str, Any]:
        """A JSON-able run report."""
        return {"best_score": self.best_score, "best_params": self.best_params, "stop_reason": self.stop_reason,
                "failed_calls": self.failed_calls,
                "study_name": self.study_name, "seconds": round(self.seconds, 2), "valset_size": self.valset_size,
                "usage": self.usage.__dict__, "config": self.config.to_dict(),
                "highest_scoring_params": self.highest_scoring_params,
                "trials": [t.to_dict() for t in self.trials], "candidates": self.candidates.to_dict()}


TrialCallback = Callable[[TrialRecord], None]


@dataclass
class SearchState:
    """Mutable state shared by the trials of one compile() call in this process."""

    program: Program
    valset: list[Example]
    candidates: Candidates
    metric: Metric
    lm: LM
    config: MIPROConfig
    rungs: tuple[int, ...]
    counts: tuple[int, ...] = ()
    scores_by_config: dict[tuple, list[float]] = field(default_factory=dict)
    records: list[TrialRecord] = field(default_factory=list)

    def program_for(self, params: dict[str, Any]) -> Program:
        instructions, demos = {}, {}
        for p in self.program.predictors:
            instructions[p.name] = self.candidates.instructions[p.name][params[f"{p.name}.instruction"]].text
            demo_set = self.candidates.demo_sets[p.name][params.get(f"{p.name}.demos", 0)]
            count = params.get(f"{p.name}.demo_count")
            demos[p.name] = list(demo_set.demos if count is None else demo_set.demos[:count])
        return self.program.with_choices(instructions, demos)

    def config_key(self, params: dict[str, Any]) -> tuple:
        """Two parameter sets that build the same prompts share one key (and one set of answers)."""
        program = self.program_for(params)
        return tuple((p.instructions, len(p.demos), id_of_demos(p.demos)) for p in program.predictors)


def demo_counts_for(config: MIPROConfig, program: Program) -> tuple[int, ...]:
    """Demo counts to search over. For a choice output with C classes, multiples of C near 8, 16 and 24, so
    every prefix of a balanced set shows each class equally often (measured: balanced sets beat random ones
    of the same size on the 9-class support set)."""
    top = config.max_labeled_demos
    if config.demo_counts:
        return tuple(sorted({min(c, top) for c in config.demo_counts}))
    if top == 0:
        return (0,)
    n_classes = max((len(f.choices) for f in program.predictors[-1].signature.outputs), default=0)
    unit = n_classes if 2 < n_classes <= 12 else 1
    counts = {min(top, max(unit, round(target / unit) * unit)) for target in (8, 16, 24)}
    return tuple(sorted(counts))


def id_of_demos(demos: Sequence[dict[str, Any]]) -> str:
    return content_hash([dict(d) for d in demos])


@dataclass(frozen=True)
class RaceOutcome:
    """How far a configuration got: mean score over the examples evaluated, and whether that was all of them."""

    score: float
    examples: int
    is_full: bool


class Racer:
    """Evaluates one configuration rung by rung, stopping once it cannot reach the bar of a rung.

    `refresh`, when given, re-reads the bars before each rung after the first: with several workers on one
    study, trials running elsewhere reach rungs while this one races, and a trial that only knew the bars of
    its start raced to the full set against none (the 4-worker runs of bench/run_throughput.py evaluated twice
    the examples per trial of one worker). With one worker nothing else reports meanwhile, so the bars read
    are the same and so is the search.
    """

    def __init__(self, state: SearchState, bars: dict[int, float],
                 refresh: Callable[[], dict[int, float]] | None = None) -> None:
        self.state = state
        self.bars = bars
        self.refresh = refresh

    def run(self, params: dict[str, Any], report: Callable[[float, int], None]) -> RaceOutcome:
        key = self.state.config_key(params)
        scores = self.state.scores_by_config.setdefault(key, [])
        n_val = len(self.state.valset)
        if len(scores) >= n_val:  # evaluated in full before: nothing left to race
            return RaceOutcome(_mean(scores), n_val, True)
        if self.bars.get(n_val, 0.0) > 1.0:  # the best scored 100%: no configuration can beat it
            return RaceOutcome(_mean(scores), len(scores), False)
        program = self.state.program_for(params)
        for index, rung in enumerate(self.state.rungs):
            if index and self.refresh is not None:
                self.bars = self.refresh()
            if not self._extend(program, scores, rung):
                return RaceOutcome(_mean(scores), len(scores), False)
            report(_mean(scores[:rung]), rung)
        return RaceOutcome(_mean(scores), len(scores), len(scores) >= n_val)

    def _extend(self, program: Program, scores: list[float], rung: int) -> bool:
        """Evaluate examples up to `rung`; False when the rung's bar became unreachable.

        Keeps `max_concurrency` calls in flight and checks the bar after every answer, instead of evaluating
        in chunks: a chunk barrier leaves the LM server idle while the slowest call of the chunk finishes."""
        start = len(scores)
        answered: dict[int, float] = {}

        def reachable() -> bool:
            return self._reachable(sum(scores) + sum(answered.values()), len(scores) + len(answered), rung)

        window = max(1, self.state.lm.config.max_concurrency)
        with ThreadPoolExecutor(max_workers=window, thread_name_prefix="race") as pool:
            in_flight: dict[Future[ExampleResult], int] = {}
            next_index = start
            while True:
                while next_index < rung and len(in_flight) < window and reachable():
                    example = self.state.valset[next_index]
                    in_flight[pool.submit(evaluate_example, program, example, self.state.metric,
                                          self.state.lm)] = next_index
                    next_index += 1
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    answered[in_flight.pop(future)] = future.result().score
        # Keep the answers in example order up to the first prefix that put the bar out of reach: which answers
        # arrived first depends on thread timing, and the kept scores must not (same seed, same search).
        for index in range(start, next_index):
            scores.append(answered[index])
            if not self._reachable(sum(scores), len(scores), rung):
                return False
        bar = self.bars.get(rung)
        return len(scores) >= rung and (bar is None or _mean(scores[:rung]) >= bar)

    def _reachable(self, total: float, done: int, rung: int) -> bool:
        """Whether the rung's bar can still be reached after scoring `total` on the first `done` examples."""
        bar = self.bars.get(rung)
        if bar is None:
            return True
        if rung >= len(self.state.valset) and done >= self.state.rungs[0]:
            return can_still_beat(total, done, rung, bar)
        return (total + rung - done) / rung >= bar


def can_still_beat(total: float, done: int, size: int, bar: float, z: float = 1.0) -> bool:
    """Whether a configuration that scored `total` on its first `done` examples is still likely to finish at or
    above `bar` on all `size`: the remaining examples are projected at its own rate so far, plus `z` standard
    deviations. A perfect remainder is possible but improbable; on an easy task with near-ties (sst2: every
    configuration 75-88%) waiting for it sent most trials through the whole validation set."""
    needed = bar * size - total
    remaining = size - done
    if needed <= 0:
        return True
    rate = min(max(total / done, 0.05), 0.95)
    projected = remaining * rate + z * math.sqrt(remaining * rate * (1 - rate))
    return min(projected, remaining) >= needed - 1e-9


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def promotion_bars(study: optuna.Study, rungs: tuple[int, ...], n_val: int) -> dict[int, float]:
    """Per rung, the best score any trial reached there, minus a noise margin (none on the full set)."""
    best: dict[int, float] = {}
    for trial in study.get_trials(deepcopy=False):
        for step, value in trial.intermediate_values.items():
            best[step] = max(best.get(step, 0.0), value)
    bars = {}
    for rung in rungs:
        if rung in best:
            # On the full set only a strict improvement matters: a tie never replaces the earlier winner.
            bars[rung] = best[rung] + 1e-9 if rung >= n_val else best[rung] - _standard_error(best[rung], rung)
    return bars


def _standard_error(accuracy: float, examples: int) -> float:
    """One binomial standard error of an accuracy measured on `examples` rows. The accuracy is clipped to
    [0.1, 0.9] so that a perfect or empty early rung still leaves a margin. Near-ties on an easy task (sst2:
    everything scores 75-88%) get a tighter margin than the 0.5/sqrt(n) worst case, and prune."""
    p = min(max(accuracy, 0.1), 0.9)
    return math.sqrt(p * (1 - p) / examples)


@dataclass(frozen=True)
class TrialMeter:
    """Usage and clock at the start of a trial, to charge the trial with what it spent."""

    usage: Usage
    started: float


class Objective:
    """optuna objective: sample a configuration, race it, record a typed TrialRecord."""

    def __init__(self, state: SearchState, study: optuna.Study, callback: TrialCallback | None) -> None:
        self.state = state
        self.study = study
        self.callback = callback

    def __call__(self, trial: optuna.Trial) -> float:
        params = self._suggest(trial)
        meter = TrialMeter(self.state.lm.usage(), time.monotonic())
        def bars() -> dict[int, float]:
            return promotion_bars(self.study, self.state.rungs, len(self.state.valset))

        try:
            outcome = Racer(self.state, bars(), refresh=bars).run(params, trial.report)
        except (BudgetExceeded, StopRequested, LMUnreachableError) as exc:  # LMUnreachableError: ModelFailing too
            self._record(trial.number, params, meter, None, error=str(exc))
            raise
        trial.set_user_attr("examples", outcome.examples)
        trial.set_user_attr("full_score", outcome.score if outcome.is_full else None)
        trial.set_user_attr("calls", (self.state.lm.usage() - meter.usage).calls)
        self._record(trial.number, params, meter, outcome)
        return outcome.score

    def _suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for p in self.state.program.predictors:
            n_instr = len(self.state.candidates.instructions[p.name])
            params[f"{p.name}.instruction"] = trial.suggest_categorical(f"{p.name}.instruction", list(range(n_instr)))
            if not self.state.config.zero_shot:
                n_sets = len(self.state.candidates.demo_sets[p.name])
                params[f"{p.name}.demos"] = trial.suggest_categorical(f"{p.name}.demos", list(range(n_sets)))
                params[f"{p.name}.demo_count"] = trial.suggest_categorical(f"{p.name}.demo_count",
                                                                           list(self.state.counts))
        return params

    def _record(self, number: int, params: dict[str, Any], meter: TrialMeter, outcome: RaceOutcome | None,
                error: str | None = None) -> None:
        used = self.state.lm.usage() - meter.usage
        full = outcome.score if outcome is not None and outcome.is_full else None
        if outcome is None:
            state = "failed"
        else:
            state = "complete" if outcome.is_full or outcome.examples >= self.state.rungs[-1] else "pruned"
        record = TrialRecord(number=number, params=params, state=state,
                             score=None if outcome is None else outcome.score,
                             examples=0 if outcome is None else outcome.examples, full_score=full,
                             is_full=full is not None, calls=used.calls, cached_calls=used.cached_calls,
                             tokens=used.prompt_tokens + used.completion_tokens, cost_usd=used.cost_usd,
                             seconds=time.monotonic() - meter.started, best_score=best_full_score(self.study, full),
                             error=error, failed_calls=used.failed_calls, prompt_tokens=used.prompt_tokens,
                             completion_tokens=used.completion_tokens)
        self.state.records.append(record)
        logger.info("trial %d %s: score=%s on %d examples (best full %s), %d calls, %d failed", number, state,
                    record.score, record.examples, record.best_score, used.calls, used.failed_calls)
        if self.callback is not None:
            self.callback(record)


def best_full_score(study: optuna.Study, extra: float | None = None) -> float | None:
    values = [t.user_attrs["full_score"] for t in study.get_trials(deepcopy=False)
              if t.user_attrs.get("full_score") is not None]
    if extra is not None:
        values.append(extra)
    return max(values) if values else None


class MIPRO:
    """The optimizer facade.

    Example:
        >>> mipro = MIPRO(metric=choice_match, lm=LM(LMConfig("local/gemma-3-270m")))
        >>> result = mipro.compile(program, trainset, valset)
        >>> result.program.to_json()
    """

    def __init__(self, metric: Metric, lm: LM, config: MIPROConfig | None = None, *,
                 proposal_lm: LM | None = None, callback: TrialCallback | None = None) -> None:
        self.metric = metric
        self.lm = lm
        self.proposal_lm = proposal_lm or lm
        self.config = config or MIPROConfig()
        self.callback = callback

    def compile(self, program: Program, trainset: Sequence[Example],
                valset: Sequence[Example] | None = None) -> RunResult:
        started = time.monotonic()
        usage_before = self.lm.usage()
        trainset, valset = self._split(list(trainset), list(valset) if valset else None)
        study = self._open_study(self._default_study_name(program, trainset, valset))
        try:
            with _failure_limit({self.lm, self.proposal_lm}, self.config.max_consecutive_failures):
                return self._search(study, program, trainset, valset, started, usage_before)
        except ModelFailing as exc:
            logger.error("run stopped: %s", exc)
            raise
        finally:
            _close_storage(study)

    def _search(self, study: optuna.Study, program: Program, trainset: list[Example], valset: list[Example],
                started: float, usage_before: Usage) -> RunResult:
        stop_reason = "completed"
        state = None
        try:
            candidates = self._candidates(study, program, trainset, valset)
            state = SearchState(program, valset, candidates, self.metric, self.lm, self.config,
                                self._rungs(len(valset)), demo_counts_for(self.config, program))
            self._enqueue_priors(study, state)
            stop_reason = self._optimize(study, state)
        except BudgetExceeded as exc:
            stop_reason = str(exc)
        except StopRequested as exc:
            stop_reason = f"stopped: {exc}" if str(exc) else "stopped on request"
        if state is None:
            raise OptimizerError(f"the search could not start: {stop_reason}")
        return self._result(study, state, stop_reason, started, usage_before)

    def _split(self, trainset: list[Example], valset: list[Example] | None) -> tuple[list[Example], list[Example]]:
        if not trainset:
            raise OptimizerError("the trainset is empty")
        resolved = self.config.resolved
        if valset is None:
            trainset, valset = split_train_val(trainset, val_fraction=0.5, max_val=resolved.val_size,
                                               seed=self.config.seed)
        shuffled = list(valset)
        random.Random(self.config.seed + 1).shuffle(shuffled)
        return trainset, shuffled[:resolved.val_size]

    def _rungs(self, n_val: int) -> tuple[int, ...]:
        rungs = sorted({min(r, n_val) for r in self.config.resolved.rungs} | {n_val})
        return tuple(rungs)

    def _default_study_name(self, program: Program, trainset: list[Example], valset: list[Example]) -> str:
        """Same program, data and settings -> same name, so a rerun against a storage resumes, not restarts."""
        # The sampler seed is left out: processes sharing one study differ only there. The failure limit changes
        # nothing that is searched, and an unset token cap is left out so that studies made before these
        # settings existed keep their names.
        settings = {k: v for k, v in self.config.to_dict().items()
                    if k not in ("sampler_seed", "max_consecutive_failures")
                    and not (k == "max_prompt_tokens" and v is None)}
        fingerprint = content_hash({"program": program.to_dict(), "config": settings,
                                    "train": [e.as_record() for e in trainset],
                                    "val": [e.as_record() for e in valset]})
        return self.config.study_name or f"mipro-{self.config.preset}-seed{self.config.seed}-{fingerprint[:12]}"

    def _open_study(self, name: str) -> optuna.Study:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        n_trials = self.config.resolved.num_trials
        with warnings.catch_warnings():  # multivariate TPE is flagged experimental; it is what MIPRO uses
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            seed = self.config.seed if self.config.sampler_seed is None else self.config.sampler_seed
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                                 n_startup_trials=max(3, n_trials // 3))
        storage: Any = None
        if self.config.storage:
            storage = optuna.storages.RDBStorage(self.config.storage, heartbeat_interval=5, grace_period=20,
                                                 engine_kwargs=_engine_kwargs(self.config.storage))
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize",
                                   load_if_exists=True)

    def _candidates(self, study: optuna.Study, program: Program, trainset: list[Example],
                    valset: list[Example]) -> Candidates:
        stored = study.user_attrs.get("candidates")
        if stored:
            logger.info("resuming study %s with its stored candidates", study.study_name)
            return Candidates.from_dict(stored)
        candidates = self._build_candidates(program, trainset, valset)
        study.set_user_attr("candidates", candidates.to_dict())
        return candidates

    def _build_candidates(self, program: Program, trainset: list[Example], valset: list[Example]) -> Candidates:
        settings = BootstrapSettings(num_sets=self.config.resolved.num_candidates,
                                     max_labeled=self.config.max_labeled_demos,
                                     max_bootstrapped=self.config.max_bootstrapped_demos,
                                     labeled_only=self.config.labeled_only, zero_shot=self.config.zero_shot)
        fitter = PromptFitter.for_program(program, [*trainset, *valset], self.lm,
                                          max_prompt_tokens=self.config.max_prompt_tokens,
                                          max_demo_tokens=self.config.max_demo_tokens)
        demo_sets = build_demo_sets(program, trainset, self.metric, self.lm, settings, self.config.seed, fitter)
        rng = random.Random(self.config.seed + 2)
        summary = summarize_dataset(trainset, self.proposal_lm, rng)
        screen = valset[:self._rungs(len(valset))[0]]
        instructions = InstructionProposer(self, program, demo_sets, summary, screen, rng).propose()
        return Candidates(instructions, demo_sets, summary)

    def _enqueue_priors(self, study: optuna.Study, state: SearchState) -> None:
        """Seed the study with the original program and the strongest prior guesses (once per study)."""
        if study.user_attrs.get("priors_enqueued"):
            return
        for params in prior_configurations(state):
            study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr("priors_enqueued", True)

    def _optimize(self, study: optuna.Study, state: SearchState) -> str:
        import optuna
        from optuna.study import MaxTrialsCallback
        from optuna.trial import TrialState

        target = self.config.resolved.num_trials
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of a killed worker, once its heartbeat is stale
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if done >= target:
            return f"completed {done} trials"
        patience = PatienceCallback(self.config.resolved.patience, first_counted=len(prior_configurations(state)),
                                    cheap_calls=state.rungs[0] * len(state.program.predictors))
        if patience.exhausted(study):
            return patience.reason
        study.optimize(Objective(state, study, self.callback), n_trials=target - done,
                       callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE,)), patience])
        return patience.reason if patience.exhausted(study) else f"completed {target} trials"

    def _result(self, study: optuna.Study, state: SearchState, stop_reason: str, started: float,
                usage_before: Usage) -> RunResult:
        highest = highest_scoring(study, state)
        params, score = best_configuration(study, state, highest)
        top = highest[0]
        return RunResult(program=state.program_for(params), best_score=score, best_params=params,
                         highest_scoring_params=None if top == params else top,
                         highest_scoring_program=None if top == params else state.program_for(top),
                         trials=tuple(state.records), candidates=state.candidates, stop_reason=stop_reason,
                         usage=self.lm.usage() - usage_before, seconds=time.monotonic() - started,
                         study_name=study.study_name, config=self.config, valset_size=len(state.valset))


class PatienceCallback:
    """Stops the study once `patience` costly trials in a row found no better full-validation score.

    A trial is costly when it made more LM calls than `cheap_calls` (the first rung's worth): a configuration
    pruned at the first rung, or one answered from the cache, costs next to nothing, and such trials are how
    the search keeps exploring (the bench's bitext runs found their best at trial 13 after eight cheap misses).
    Counted from the study's trials, not this process's, so a resumed run or a second worker agrees on when to
    stop; the prior configurations never count: they are fixed, not sampled."""

    def __init__(self, patience: int, first_counted: int, cheap_calls: int) -> None:
        self.patience = patience
        self.first_counted = first_counted
        self.cheap_calls = cheap_calls
        self.reason = ""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.exhausted(study):
            study.stop()

    def exhausted(self, study: optuna.Study) -> bool:
        if self.patience <= 0:
            return False
        from optuna.trial import TrialState

        best, since = None, 0
        for trial in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
            score = trial.user_attrs.get("full_score")
            if score is not None and (best is None or score > best):
                best, since = score, 0
            elif trial.number >= self.first_counted and trial.user_attrs.get("calls", 0) > self.cheap_calls:
                since += 1
        if since < self.patience:
            return False
        self.reason = f"stopped early: {since} costly trials in a row found no better validation score"
        return True


@contextmanager
def _failure_limit(lms: set[Any], limit: int | None) -> Iterator[None]:
    """Apply MIPROConfig.max_consecutive_failures to the run's LMs for the run, then restore their own."""
    if limit is None:
        yield
        return
    previous = [(lm, lm.set_failure_limit(limit)) for lm in lms if hasattr(lm, "set_failure_limit")]
    try:
        yield
    finally:
        for lm, old in previous:
            lm.set_failure_limit(old)


def _close_storage(study: optuna.Study) -> None:
    """Dispose a database storage's connection pool now, not whenever the garbage collector gets to it."""
    storage = getattr(study, "_storage", None)
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a caching layer
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def _engine_kwargs(url: str) -> dict[str, Any]:
    # SQLite studies shared by several processes need a busy timeout instead of failing on a lock.
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def prior_configurations(state: SearchState) -> list[dict[str, Any]]:
    """The program as given, then each instruction with the largest balanced labeled set."""
    configs = []
    max_count = max(state.counts)
    for instr in range(max(len(v) for v in state.candidates.instructions.values())):
        params: dict[str, Any] = {}
        for p in state.program.predictors:
            params[f"{p.name}.instruction"] = min(instr, len(state.candidates.instructions[p.name]) - 1)
            if not state.config.zero_shot:
                params[f"{p.name}.demos"] = 1 if len(state.candidates.demo_sets[p.name]) > 1 else 0
                params[f"{p.name}.demo_count"] = max_count
        configs.append(params)
    original = {k: (0 if k.endswith((".instruction", ".demos")) else v) for k, v in configs[0].items()}
    if original not in configs:
        configs.insert(1, original)
    return configs


def best_configuration(study: optuna.Study, state: SearchState,
                       highest: tuple[dict[str, Any], float] | None = None) -> tuple[dict[str, Any], float]:
    """The configuration with the best full-validation score (with `MIPROConfig.simplest_within_se`, the
    shortest prompt within one paired standard error of it); else the best partial one; else the original.
    `highest`: `highest_scoring(study, state)` when the caller has it already."""
    params, score = highest or highest_scoring(study, state)
    simpler = simplest_within_noise(study, state, params) if state.config.simplest_within_se else None
    return simpler or (params, score)


def highest_scoring(study: optuna.Study, state: SearchState) -> tuple[dict[str, Any], float]:
    """The configuration with the best full-validation score; else the best partial one; else the original."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    full = [t for t in complete if t.user_attrs.get("full_score") is not None]
    pool = full or [t for t in complete if t.value is not None]
    if not pool:
        return prior_configurations(state)[0], 0.0
    def preference(t: optuna.trial.FrozenTrial) -> tuple[float, int, int]:
        # Equal scores: the shorter prompt wins (it costs fewer input tokens on every production call), then
        # the earlier trial.
        return t.user_attrs.get("full_score") or t.value or 0.0, -prompt_chars(state, t.params), -t.number

    best = max(pool, key=preference)
    return dict(best.params), float(best.user_attrs.get("full_score") or best.value or 0.0)


def simplest_within_noise(study: optuna.Study, state: SearchState,
                          best: dict[str, Any]) -> tuple[dict[str, Any], float] | None:
    """The one-standard-error rule: of the configurations scored on the whole validation set, the one with the
    shortest prompt whose score is within one paired standard error of the best's (same examples, so the noise
    they share cancels). A 60-example validation set cannot tell such configurations apart, and the shorter
    prompt costs fewer tokens on every call after release. Scores come from this process's answers; a
    configuration evaluated by another worker is left out; None when the best's answers are not here."""
    n_val = len(state.valset)
    full = {}
    for params in _full_trial_params(study):
        scores = state.scores_by_config.get(state.config_key(params), [])
        if len(scores) >= n_val:
            full[state.config_key(params)] = (params, scores[:n_val])
    top = full.get(state.config_key(best))
    if top is None:
        return None
    top_scores = top[1]
    within = [(params, scores) for params, scores in full.values()
              if _mean(scores) >= _mean(top_scores) - paired_standard_error(top_scores, scores)]
    params, scores = min(within, key=lambda item: (prompt_chars(state, item[0]), -_mean(item[1])))
    return params, _mean(scores)


def _full_trial_params(study: optuna.Study) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    return [dict(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("full_score") is not None]


def prompt_chars(state: SearchState, params: dict[str, Any]) -> int:
    """Characters of the instructions and demos a configuration adds to every prompt (a proxy for its tokens)."""
    program = state.program_for(params)
    return sum(len(p.instructions) + sum(len(json.dumps(dict(d), ensure_ascii=False)) for d in p.demos)
               for p in program.predictors)


class InstructionProposer:
    """Proposes instruction candidates one at a time, each seeing the scores and failures before it."""

    def __init__(self, mipro: MIPRO, program: Program, demo_sets: dict[str, list[DemoSet]], summary: str,
                 screen: list[Example], rng: random.Random) -> None:
        self.mipro = mipro
        self.program = program
        self.demo_sets = demo_sets
        self.screen = screen
        self.rng = rng
        self.context = ProposalContext(summary, describe_program(program))

    def propose(self) -> dict[str, list[InstructionCandidate]]:
        result = {p.name: [InstructionCandidate(p.instructions, "original")] for p in self.program.predictors}
        self._score(result)
        for index in range(1, self.mipro.config.instruction_count):
            for p in self.program.predictors:
                demos = self._proposal_demos(p.name)
                existing = [c.text for c in result[p.name]]
                result[p.name].append(propose_instruction(p, demos, self.context, self.mipro.proposal_lm,
                                                          self.rng, index, existing))
            self._score(result)
        return result

    def _proposal_demos(self, name: str) -> list[dict[str, Any]]:
        sets = [s for s in self.demo_sets[name] if s.demos]
        return list(self.rng.choice(sets).demos) if sets else []

    def _score(self, result: dict[str, list[InstructionCandidate]]) -> None:
        """Score the newest candidates on the screening slice with the best prior demos (answers are cached
        and reused by the search's first rung)."""
        if not self.screen:
            return
        instructions = {name: cands[-1].text for name, cands in result.items()}
        demos = {}
        for p in self.program.predictors:
            sets = self.demo_sets[p.name]
            demo_set = sets[1] if len(sets) > 1 and not self.mipro.config.zero_shot else sets[0]
            demos[p.name] = list(demo_set.demos[:max(demo_counts_for(self.mipro.config, self.program))])
        evaluation = evaluate(self.program.with_choices(instructions, demos), self.screen, self.mipro.metric,
                              self.mipro.lm)
        last = self.program.predictors[-1].name
        self.context.scored.append((instructions[last], evaluation.score))
        self.context.failures = [_failure_line(r) for r in evaluation.failures[:3]]


def _failure_line(result: ExampleResult) -> str:
    inputs = "; ".join(f"{k}: {str(v)[:160]}" for k, v in result.example.inputs.items())
    expected = ", ".join(f"{k}={v}" for k, v in result.example.labels.items())
    got = result.error or ", ".join(f"{k}={v}" for k, v in result.prediction.outputs.items() if k != "reasoning")
    return f"- {inputs} -> expected {expected}, got {got}"


