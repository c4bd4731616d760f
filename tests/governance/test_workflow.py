"""The transition tables (governance.models.workflow): the database triggers freeze exactly the table's frozen
states, and `transition` moves only along the table's edges, saving and auditing in one step."""

from __future__ import annotations

import ast
import importlib

import pytest

from governance.actions._common import transition
from governance.actions.versions import version_state
from governance.errors import IllegalTransition
from governance.models import (
    FINISHED_RUN_STATUSES,
    FROZEN_STATUSES,
    ChangeRequestStatus,
    EvaluationStatus,
    PromptVersion,
    RunStatus,
    VersionStatus,
)
from governance.models.workflow import CHANGE_REQUEST, EVALUATION, RUN, VERSION, WORKFLOWS, Workflow

from .conftest import AuditLog


def _sql_tuple(migration: str, name: str) -> set[str]:
    """A constant such as FROZEN = "('approved', 'retired')" of a migration module, as a set of states."""
    return set(ast.literal_eval(getattr(importlib.import_module(f"governance.migrations.{migration}"), name)))


def test_the_database_freezes_exactly_the_frozen_version_states():
    assert _sql_tuple("0002_integrity_triggers", "FROZEN") == set(VERSION.frozen)
    assert _sql_tuple("0003_trigger_gaps", "FROZEN") == set(VERSION.frozen)
    assert set(FROZEN_STATUSES) == set(VERSION.frozen)


def test_a_frozen_version_moves_only_to_frozen_states_as_the_trigger_allows():
    """The trigger lets approved become retired and nothing else; retired never moves."""
    for state in VERSION.frozen:
        assert set(VERSION.targets(state)) <= set(VERSION.frozen)
    assert VERSION.targets(VersionStatus.APPROVED) == (VersionStatus.RETIRED,)
    assert VersionStatus.RETIRED in VERSION.terminal


def test_finished_evaluations_are_the_database_frozen_and_the_terminal_states():
    assert _sql_tuple("0008_evaluation_triggers", "FINISHED") == set(EVALUATION.frozen) == set(EVALUATION.terminal)


def test_terminal_states_of_runs_and_change_requests():
    assert set(RUN.terminal) == set(FINISHED_RUN_STATUSES)
    assert set(CHANGE_REQUEST.terminal) == {ChangeRequestStatus.APPROVED, ChangeRequestStatus.REJECTED,
                                            ChangeRequestStatus.WITHDRAWN}


def test_every_state_is_reachable_from_the_initial_one():
    for workflow in WORKFLOWS.values():
        reached, frontier = {workflow.initial}, [workflow.initial]
        while frontier:
            for target in workflow.targets(frontier.pop()):
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(workflow.statuses.values), workflow.name


def test_a_table_naming_an_unknown_state_is_refused():
    with pytest.raises(ValueError, match=r"workflow x names unknown states: \['nonsense'\]"):
        Workflow(name="x", statuses=RunStatus, initial=RunStatus.QUEUED, edges={RunStatus.QUEUED: ("nonsense",)},
                 subject=str)


def test_sources_name_the_states_with_an_edge_in_the_enum_order():
    assert VERSION.sources(VersionStatus.WITHDRAWN) == (VersionStatus.DRAFT, VersionStatus.IN_REVIEW)
    assert EVALUATION.sources(EvaluationStatus.SUCCEEDED) == (EvaluationStatus.RUNNING,)
    assert RUN.allows(RunStatus.RUNNING, RunStatus.QUEUED) and not RUN.allows(RunStatus.QUEUED, RunStatus.SUCCEEDED)


def test_transition_refuses_an_edge_the_table_lacks_and_changes_nothing(make_version, author):
    version = make_version()
    audit = AuditLog()
    with pytest.raises(IllegalTransition,
                       match=f"^version {version.number} is draft; only in_review versions can be approved$"):
        transition(version, VersionStatus.APPROVED, actor=author, action="version.approved", state=version_state,
                   doing="be approved")
    assert PromptVersion.objects.get(pk=version.pk).status == VersionStatus.DRAFT
    assert audit.actions() == []


def test_transition_saves_the_move_and_audits_before_and_after(make_version, author):
    version = make_version()
    audit = AuditLog()
    transition(version, VersionStatus.WITHDRAWN, actor=author, action="version.withdrawn", state=version_state,
               reason="not needed", after={"by": "test"}, note="abandoned")
    stored = PromptVersion.objects.get(pk=version.pk)
    assert (stored.status, stored.note) == (VersionStatus.WITHDRAWN, "abandoned")
    [event] = audit.events()
    assert (event.action, event.reason, event.actor_id) == ("version.withdrawn", "not needed", author.pk)
    assert (event.before["status"], event.after["status"], event.after["by"]) == ("draft", "withdrawn", "test")


def test_the_diagram_command_prints_every_table():
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("workflow_diagram", stdout=out)
    text = out.getvalue()
    assert text.count("stateDiagram-v2") == 4
    assert "    in_review --> approved: last required approval\n" in text
    assert "    running --> queued: worker lost: requeued\n" in text
    assert "note right of approved: frozen (database triggers)" in text


def test_docs_architecture_carries_the_current_diagrams():
    from governance.management.commands.workflow_diagram import architecture_doc, with_diagrams

    text = architecture_doc().read_text(encoding="utf-8")
    assert "stateDiagram-v2" in text
    assert with_diagrams(text) == text, "the diagrams are out of date: python manage.py workflow_diagram --write"
