"""The workflow, stated once: one transition table per status enum.

Actions move objects only along these edges (governance.actions._common.transition checks them and writes the
audit event), the portal's buttons and the API's refusals ask the same table through the actions'
`allowed_actions`, the database triggers freeze the `frozen` states (a test compares them with migrations 0002,
0003 and 0008), and docs/architecture.md draws its state diagrams from here (`python manage.py
workflow_diagram`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from governance.models.choices import ChangeRequestStatus, EvaluationStatus, RunStatus, VersionStatus


@dataclass(frozen=True)
class Workflow:
    """The states of one kind of object and the moves between them."""

    name: str
    statuses: type[models.TextChoices]
    initial: str
    edges: dict[str, tuple[str, ...]]
    subject: Callable[[Any], str]  # how messages name one object: "version 7", "change request 3"
    frozen: tuple[str, ...] = ()  # states whose rows the database itself refuses to change (beyond the edges)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # what makes an edge happen (diagrams)

    def __post_init__(self) -> None:
        known = set(self.statuses.values)
        named = {self.initial, *self.edges, *(t for targets in self.edges.values() for t in targets), *self.frozen}
        if named - known:
            raise ValueError(f"workflow {self.name} names unknown states: {sorted(named - known)}")

    def targets(self, status: str) -> tuple[str, ...]:
        return self.edges.get(str(status), ())

    def allows(self, source: str, target: str) -> bool:
        return str(target) in self.targets(source)

    def sources(self, target: str) -> tuple[str, ...]:
        """The states from which `target` is one move away, in the enum's order."""
        return tuple(s for s in self.statuses.values if str(target) in self.edges.get(s, ()))

    @property
    def terminal(self) -> tuple[str, ...]:
        """States with no way out."""
        return tuple(s for s in self.statuses.values if not self.edges.get(s))

    def pairs(self) -> Iterable[tuple[str, str]]:
        for source in self.statuses.values:
            for target in self.edges.get(source, ()):
                yield source, target


V, CR, R, E = VersionStatus, ChangeRequestStatus, RunStatus, EvaluationStatus

VERSION = Workflow(
    name="version", statuses=VersionStatus, initial=V.DRAFT,
    edges={V.DRAFT: (V.IN_REVIEW, V.WITHDRAWN),
           V.IN_REVIEW: (V.APPROVED, V.REJECTED, V.DRAFT, V.WITHDRAWN),
           V.APPROVED: (V.RETIRED,)},
    subject=lambda version: f"version {version.number}",
    frozen=(V.APPROVED, V.RETIRED),
    notes={(V.DRAFT, V.IN_REVIEW): "change request opened", (V.IN_REVIEW, V.APPROVED): "last required approval",
           (V.IN_REVIEW, V.REJECTED): "a reviewer rejects", (V.IN_REVIEW, V.DRAFT): "changes requested, or its change request withdrawn",
           (V.DRAFT, V.WITHDRAWN): "author withdraws", (V.IN_REVIEW, V.WITHDRAWN): "author withdraws",
           (V.APPROVED, V.RETIRED): "retired"},
)

CHANGE_REQUEST = Workflow(
    name="change request", statuses=ChangeRequestStatus, initial=CR.OPEN,
    edges={CR.OPEN: (CR.APPROVED, CR.REJECTED, CR.CHANGES_REQUESTED, CR.WITHDRAWN),
           CR.CHANGES_REQUESTED: (CR.OPEN, CR.WITHDRAWN)},
    subject=lambda cr: f"change request {cr.pk}",
    notes={(CR.OPEN, CR.APPROVED): "required approvals reached", (CR.OPEN, CR.REJECTED): "a reviewer rejects",
           (CR.OPEN, CR.CHANGES_REQUESTED): "a reviewer requests changes",
           (CR.CHANGES_REQUESTED, CR.OPEN): "resubmitted", (CR.OPEN, CR.WITHDRAWN): "withdrawn",
           (CR.CHANGES_REQUESTED, CR.WITHDRAWN): "withdrawn"},
)

RUN = Workflow(
    name="run", statuses=RunStatus, initial=R.QUEUED,
    edges={R.QUEUED: (R.RUNNING, R.FAILED, R.CANCELLED),
           R.RUNNING: (R.RUNNING, R.QUEUED, R.SUCCEEDED, R.FAILED, R.CANCELLED)},
    subject=lambda run: f"run {run.pk}",
    notes={(R.QUEUED, R.RUNNING): "a worker claims it", (R.RUNNING, R.RUNNING): "executor lost: taken over", (R.RUNNING, R.QUEUED): "worker lost: requeued",
           (R.RUNNING, R.SUCCEEDED): "proposal recorded", (R.QUEUED, R.CANCELLED): "cancelled",
           (R.RUNNING, R.CANCELLED): "cancel seen", (R.RUNNING, R.FAILED): "error or gave up",
           (R.QUEUED, R.FAILED): "gave up"},
)

EVALUATION = Workflow(
    name="evaluation", statuses=EvaluationStatus, initial=E.QUEUED,
    edges={E.QUEUED: (E.RUNNING, E.FAILED, E.CANCELLED),
           E.RUNNING: (E.SUCCEEDED, E.FAILED, E.CANCELLED)},
    subject=lambda evaluation: f"evaluation {evaluation.pk}",
    frozen=(E.SUCCEEDED, E.FAILED, E.CANCELLED),
    notes={(E.QUEUED, E.RUNNING): "an executor claims it", (E.RUNNING, E.SUCCEEDED): "every example scored",
           (E.QUEUED, E.FAILED): "error", (E.RUNNING, E.FAILED): "error or model failing",
           (E.QUEUED, E.CANCELLED): "stop requested", (E.RUNNING, E.CANCELLED): "stop requested"},
)

WORKFLOWS: dict[str, Workflow] = {"PromptVersion": VERSION, "ChangeRequest": CHANGE_REQUEST,
                                  "OptimizationRun": RUN, "Evaluation": EVALUATION}


def workflow_of(obj: Any) -> Workflow:
    """The table that governs `obj`'s status (by model name, so this module needs no model imports)."""
    try:
        return WORKFLOWS[type(obj).__name__]
    except KeyError:
        raise LookupError(f"{type(obj).__name__} has no workflow") from None


def mermaid(workflow: Workflow) -> str:
    """The workflow as a Mermaid state diagram (docs/architecture.md embeds these; `manage.py workflow_diagram`)."""
    lines = ["stateDiagram-v2", f"    [*] --> {workflow.initial}"]
    for source, target in workflow.pairs():
        note = workflow.notes.get((source, target))
        lines.append(f"    {source} --> {target}" + (f": {note}" if note else ""))
    lines += [f"    {state} --> [*]" for state in workflow.terminal]
    lines += [f"    note right of {state}: frozen (database triggers)" for state in workflow.frozen]
    return "\n".join(lines)


def diagrams_markdown() -> str:
    """Every workflow's diagram as Markdown, in a fixed order: the block docs/architecture.md carries."""
    parts = []
    for workflow in (VERSION, CHANGE_REQUEST, RUN, EVALUATION):
        parts.append(f"### {workflow.name.capitalize()}\n\n```mermaid\n{mermaid(workflow)}\n```")
    return "\n\n".join(parts) + "\n"
