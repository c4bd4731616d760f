"""Side-by-side comparison of versions on one registered dataset, read from the system's evaluations only.

A comparison has columns (a version, or the program's spec, with the evaluation that scored it on the dataset)
and rows (the dataset's examples, aligned by index). The first column is the reference: a row is "newly wrong"
when the reference is right and another column is wrong, "newly right" the reverse, "both wrong" when every
column is wrong. Scores are never computed here: totals are the evaluations' own, the paired significance figure
is `compare_paired` over the evaluations' per-example scores (the same figure a change request records).

Queries do not grow with the dataset: one for every column's scores (index and score only), one for the shown
page's results and one for the page's examples. Missing evaluations are asked for through the evaluation actions
(`request_missing`); the job backend runs them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator

from governance.actions import evaluations as evaluation_actions
from governance.errors import InvalidInput
from governance.models import (
    LIVE_EVALUATION_STATUSES,
    Dataset,
    Evaluation,
    EvaluationResult,
    EvaluationStatus,
    Program,
    PromptVersion,
    payload_hash,
)
from governance.permissions import require_member
from optimizer import PairedComparison, compare_paired, metric_names

PER_PAGE = 25
CORRECT = 1.0  # a score this high is "right"; graded metrics (F1) below it count as wrong, as the gate's failures do
FILTERS = {"all": "All examples", "newly_wrong": "Newly wrong", "newly_right": "Newly right",
           "both_wrong": "Both wrong"}
CHANGE_LABELS = {"newly_wrong": "newly wrong", "newly_right": "newly right", "both_wrong": "both wrong",
                 "both_right": "both right"}


@dataclass(frozen=True)
class Column:
    """One compared content: a version (or the program's spec when `version` is None) and its evaluation."""

    label: str
    version: PromptVersion | None
    evaluation: Evaluation | None

    @property
    def ready(self) -> bool:
        return self.evaluation is not None and self.evaluation.status == EvaluationStatus.SUCCEEDED

    @property
    def pending(self) -> bool:
        return self.evaluation is not None and not self.evaluation.is_finished

    @property
    def state(self) -> str:
        """What the page says about the column's evaluation."""
        if self.evaluation is None:
            return "not evaluated on this dataset yet"
        return str(self.evaluation.get_status_display()).lower()


@dataclass(frozen=True)
class Cell:
    """One column's answer on one example."""

    predicted: dict[str, Any]
    raw: str
    score: float
    error: str
    feedback: dict[str, str]

    @property
    def correct(self) -> bool:
        return self.score >= CORRECT


@dataclass(frozen=True)
class Row:
    index: int
    change: str
    inputs: dict[str, Any]
    expected: dict[str, Any]
    cells: list[Cell | None]

    @property
    def change_label(self) -> str:
        return CHANGE_LABELS[self.change]


@dataclass(frozen=True)
class Pair:
    """A column against the reference column: the paired significance figure over the aligned examples."""

    column: Column
    reference: Column
    paired: PairedComparison


@dataclass
class Comparison:
    columns: list[Column]
    dataset: Dataset
    show: str = "all"
    counts: dict[str, int] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    page: Page | None = None
    rows: list[Row] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return len(self.columns) >= 2 and all(c.ready for c in self.columns)

    @property
    def pending(self) -> list[Column]:
        return [c for c in self.columns if c.pending]

    @property
    def missing(self) -> list[Column]:
        """Columns with no usable evaluation and none on the way: never requested, failed or cancelled."""
        return [c for c in self.columns if not c.ready and not c.pending]

    @property
    def metric(self) -> str:
        """The metric the columns' evaluations scored with."""
        return next((c.evaluation.metric for c in self.columns if c.evaluation is not None), "")

    @property
    def query(self) -> str:
        """The compare page's query string for these columns and dataset; empty when a column is no version
        (the program's spec, before anything is released)."""
        if any(c.version is None for c in self.columns):
            return ""
        return "?" + "&".join([*(f"versions={c.version.number}" for c in self.columns),  # type: ignore[union-attr]
                               f"dataset={self.dataset.pk}"])

    @property
    def show_label(self) -> str:
        return FILTERS[self.show].lower()

    @property
    def filters(self) -> list[tuple[str, str, int]]:
        """(key, label, count) of each filter, "both wrong" said "all wrong" for more than two columns."""
        def label(key: str) -> str:
            return "All wrong" if key == "both_wrong" and len(self.columns) > 2 else FILTERS[key]
        return [(key, label(key), self.counts.get(key, 0)) for key in FILTERS]


# --- columns: which evaluation answers for which version ---------------------------------------------------


def version_columns(program: Program, versions: Sequence[PromptVersion], dataset: Dataset,
                    metric: str | None = None) -> list[Column]:
    """A column per version with its newest evaluation on `dataset` (its own LM; the program's metric unless
    `metric` names another): a live one (queued, running, succeeded) before a failed one. One query."""
    keys = {v.pk: _key(program, v.payload) for v in versions}
    found = (Evaluation.objects.filter(program=program, dataset_hash=dataset.content_hash,
                                       metric=metric or program.metric,
                                       content_hash__in={content for content, _ in keys.values()})
             .order_by("-created_at", "-id"))
    newest: dict[tuple[str, str], Evaluation] = {}
    for evaluation in found:
        key = (evaluation.content_hash, evaluation.lm_key)
        current = newest.get(key)
        if current is None or (current.status not in LIVE_EVALUATION_STATUSES
                               and evaluation.status in LIVE_EVALUATION_STATUSES):
            newest[key] = evaluation
    return [Column(f"v{v.number}", v, newest.get(keys[v.pk])) for v in versions]


def _key(program: Program, payload: dict[str, Any]) -> tuple[str, str]:
    return payload_hash(payload), evaluation_actions.lm_key(evaluation_actions.evaluation_lm(program, payload))


def request_missing(program: Program, versions: Sequence[PromptVersion], dataset: Dataset, *, actor: Any,
                    metric: str | None = None) -> list[Evaluation]:
    """Ask the system for the evaluations the comparison lacks (members only; each request is audited and
    announced by the evaluation actions, reused when one exists). Returns the evaluations newly queued."""
    require_member(actor, program)
    if dataset.program_id != program.pk:
        raise InvalidInput(f"dataset {dataset.pk} is not a dataset of program {program.slug}", field="dataset")
    metric = comparable_metric(program, metric)
    asked = []
    for column in version_columns(program, versions, dataset, metric):
        if column.ready or column.pending or column.version is None:
            continue
        asked.append(evaluation_actions.request_evaluation(program, column.version.payload, dataset, actor=actor,
                                                           metric=metric))
    return asked


def metric_choices(program: Program) -> list[str]:
    """Metrics a comparison may score with: the program's own, then every registered name (built-ins such as the
    LM judge, and entry points). Never an arbitrary `module:function` typed by a user: that would import it."""
    return list(dict.fromkeys([program.metric, *metric_names()]))


def comparable_metric(program: Program, metric: str | None) -> str:
    """`metric` if a comparison may use it (None or empty: the program's), else 400 naming the field."""
    if not metric:
        return program.metric
    if metric not in metric_choices(program):
        raise InvalidInput(f"metric {metric!r} must be one of {', '.join(metric_choices(program))}", field="metric")
    return metric


# --- the table ---------------------------------------------------------------------------------------------


def compare(columns: list[Column], dataset: Dataset, *, show: str = "all", page: Any = 1,
            per_page: int | None = None) -> Comparison:
    """The aligned table of `columns` on `dataset`: counts per filter, the paired figures against the first
    column, and one page of the rows `show` selects. Empty (no rows) until every column's evaluation succeeded.
    """
    if show not in FILTERS:
        raise InvalidInput(f"rows must be one of {', '.join(FILTERS)}, got {show!r}", field="rows")
    comparison = Comparison(columns, dataset, show)
    if not comparison.ready:
        return comparison
    scores = _scores([c.evaluation for c in columns])  # type: ignore[misc]
    changes = {index: _change(row) for index, row in scores.items()}
    comparison.counts = {key: sum(1 for c in changes.values() if key == "all" or c == key) for key in FILTERS}
    comparison.pairs = [Pair(column, columns[0], _paired(scores, 0, i)) for i, column in enumerate(columns)
                        if i > 0] if scores else []  # no example scored by all: nothing to pair
    chosen = [index for index in sorted(changes) if show == "all" or changes[index] == show]
    comparison.page = Paginator(chosen, per_page or PER_PAGE).get_page(page)
    comparison.rows = _rows(columns, dataset, list(comparison.page.object_list), changes)
    return comparison


def _scores(evaluations: list[Evaluation]) -> dict[int, list[float]]:
    """Per example index, each evaluation's score (in column order); only examples every evaluation scored."""
    positions = _positions(evaluations)
    by_index: dict[int, list[float | None]] = {}
    for evaluation_id, index, score in EvaluationResult.objects.filter(
            evaluation_id__in=positions).values_list("evaluation_id", "index", "score"):
        row = by_index.setdefault(index, [None] * len(evaluations))
        for position in positions[evaluation_id]:
            row[position] = score
    return {index: row for index, row in by_index.items() if None not in row}  # type: ignore[misc]


def _positions(evaluations: list[Evaluation]) -> dict[int, list[int]]:
    """Each evaluation's columns. One evaluation can fill several: a first version whose content is the program
    spec that production serves is judged on the very evaluation of its baseline (evaluations are reused by
    content), so both columns show it."""
    positions: dict[int, list[int]] = {}
    for position, evaluation in enumerate(evaluations):
        positions.setdefault(evaluation.pk, []).append(position)
    return positions


def _change(scores: list[float]) -> str:
    right = [score >= CORRECT for score in scores]
    if all(right):
        return "both_right"
    if not any(right):
        return "both_wrong"
    return "newly_wrong" if right[0] else "newly_right"


def _paired(scores: dict[int, list[float]], reference: int, other: int) -> PairedComparison:
    indexes = sorted(scores)
    return _compare(tuple(scores[i][other] for i in indexes), tuple(scores[i][reference] for i in indexes))


@functools.lru_cache(maxsize=256)
def _compare(candidate: tuple[float, ...], baseline: tuple[float, ...]) -> PairedComparison:
    """compare_paired, remembered: finished evaluations never change, and the bootstrap costs n x 2000 draws."""
    return compare_paired(candidate, baseline)


def _rows(columns: list[Column], dataset: Dataset, indexes: list[int], changes: dict[int, str]) -> list[Row]:
    positions = _positions([c.evaluation for c in columns])  # type: ignore[misc]
    cells: dict[int, list[Cell | None]] = {index: [None] * len(columns) for index in indexes}
    for result in EvaluationResult.objects.filter(evaluation_id__in=positions, index__in=indexes):
        for position in positions[result.evaluation_id]:
            cells[result.index][position] = Cell(result.predicted, result.raw, result.score, result.error,
                                                 result.feedback or {})
    examples = {e.index: e for e in dataset.examples.filter(index__in=indexes)}
    return [Row(index, changes[index], examples[index].inputs if index in examples else {},
                examples[index].outputs if index in examples else {}, cells[index]) for index in indexes]


def change_request_columns(cr: Any) -> list[Column]:
    """Production (or the program's spec when nothing is released) then the candidate, each with the
    evaluation the change request is judged on."""
    base = cr.base_version
    return [Column(f"Production v{base.number}" if base else "Production (program spec)", base,
                   cr.baseline_evaluation),
            Column(f"Candidate v{cr.version.number}", cr.version, cr.candidate_evaluation)]


# --- figures: every score names its dataset, its size and its source ----------------------------------------


@dataclass(frozen=True)
class SearchFigure:
    """The search's best full-validation score: the optimizer's own measure on its validation rows, not an
    evaluation. `rows` is how many rows a full-validation trial scored (the preset caps it), `of_rows` how many
    the validation set has, `dataset` the dataset they come from (the train set when validation was held out)."""

    score: float | None
    rows: int | None
    of_rows: int | None
    dataset: Dataset | None
    held_out: bool


def search_figure(run: Any, trials: Sequence[Any]) -> SearchFigure:
    """The run's best search score with the validation rows it was measured on (`trials`: the run's trials)."""
    ids = (run.config or {}).get("datasets") or {}
    held_out = bool((run.config or {}).get("val_held_out"))
    dataset_id = ids.get("train") if held_out else ids.get("val")
    dataset = Dataset.objects.filter(pk=dataset_id).first() if dataset_id else None
    rows = max((t.examples for t in trials if t.kind == "full"), default=None)
    of_rows = None if held_out or dataset is None else dataset.row_count
    return SearchFigure((run.progress or {}).get("best_score"), rows, of_rows, dataset, held_out)


def final_evaluations(run: Any, versions: Sequence[PromptVersion]) -> list[tuple[str, Evaluation]]:
    """The system evaluations a run ended with, each named for what it scored: the run's candidate (a version
    it produced) or production (what the candidate is compared with)."""
    produced = {v.content_hash for v in versions}
    return [("Candidate" if e.content_hash in produced else "Production", e)
            for e in run.evaluations.filter(status=EvaluationStatus.SUCCEEDED).select_related("dataset")
            .order_by("id")]


def content_evaluations(program: Program, content_hash: str) -> list[Evaluation]:
    """The system's succeeded evaluations of one content, newest first, each with its dataset."""
    return list(Evaluation.objects.filter(program=program, content_hash=content_hash,
                                          status=EvaluationStatus.SUCCEEDED).select_related("dataset")
                .order_by("-finished_at", "-id"))


def succeeded_evaluations(program: Program, versions: Sequence[PromptVersion],
                          dataset: Dataset) -> dict[int, Evaluation]:
    """Version id -> its succeeded evaluation on `dataset` (its own LM, the program's metric); one query."""
    return {c.version.pk: c.evaluation for c in version_columns(program, versions, dataset)  # type: ignore[misc]
            if c.ready}
