"""The review workflow on PostgreSQL: the full flow, the integrity triggers, and real concurrency.

Concurrency tests run with committed transactions (`transaction=True`) and one database connection per
thread, so row locks and READ COMMITTED visibility are the server's, not a simulation. Change requests are
evaluated by the system (a loopback fake model, export_helpers.lm_server) on the program's test rows before
anyone approves, and every signature names the content hash the reviewer saw.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction

from governance.actions import (
    approve_change_request,
    create_program,
    create_user_with_roles,
    create_version,
    import_dataset,
    initial_payload,
    open_change_request,
    release_version,
    rollback,
    setup_role_groups,
)
from governance.audit import verify_chain
from governance.errors import GovernanceError, IllegalTransition
from governance.models import (
    AuditEvent,
    ChangeRequest,
    Evaluation,
    PromptVersion,
    ReleaseLabel,
    Review,
    VersionStatus,
)
from tests.governance.conftest import (
    FAKE_MODEL,
    TEST_ROWS,
    WINNING_INSTRUCTIONS,
    demo_spec,
    password,
    payload_with,
    seen,
)
from tests.governance.export_helpers import evaluate, lm_server
from tests.optimizer.simulated import load_rows

ROLES = {"author": ["author"], "reviewer1": ["reviewer"], "reviewer2": ["reviewer"], "reviewer3": ["reviewer"],
         "releaser": ["releaser"]}


@pytest.fixture(scope="module", autouse=True)
def collect_leaked_cursors():
    """Finalize server-side cursors that earlier tests left open, before our first transaction starts.

    An abandoned `.iterator()` (e.g. held by an exception's traceback) closes its named cursor whenever the
    garbage collector gets to it; on PostgreSQL that CLOSE fails once its transaction is gone, and inside a
    later test's transaction it would abort that transaction. Collected here, between transactions, it can't.
    """
    gc.collect()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _world() -> dict[str, Any]:
    setup_role_groups()
    users = {name: create_user_with_roles(actor=None, username=name, password=f"{name}-secret-pass", roles=roles,
                                          first_name=name.capitalize(), last_name="Example")
             for name, roles in ROLES.items()}
    program = create_program(actor=users["author"], slug="support", name="Support triage", spec=demo_spec(),
                             metric="choice", lm_config={"model": FAKE_MODEL, "api_base": lm_server().url},
                             members=[u for name, u in users.items() if name != "author"])
    import_dataset(program, actor=users["author"], split="test", name="test slice",
                   rows=load_rows("test")[:TEST_ROWS])
    return {**users, "program": program}


def _version_in_review(world: dict[str, Any], instructions: str = "Classify carefully.", *,
                       evaluated: bool = True) -> ChangeRequest:
    """A version in review; its change request evaluated by the system (as the job backend would) unless not."""
    version = create_version(world["program"], actor=world["author"], payload=payload_with(world["program"],
                                                                                           instructions))
    cr = open_change_request(version, actor=world["author"], title=f"Review v{version.number}")
    return evaluate(cr) if evaluated else cr


def _approve(cr: ChangeRequest, user: Any) -> None:
    approve_change_request(cr, actor=user, password=password(user), content_hash=seen(cr))


def _run_together(workers: list[Callable[[], Any]]) -> list[Any]:
    """Start every worker at the same moment, each on its own thread and database connection."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work()
        except Exception as exc:  # noqa: BLE001  (collected and asserted by the test)
            results[index] = exc
        finally:
            connection.close()  # this thread's connection; the test database cannot be dropped while it is open

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a worker hung (lock never released?)"
    return results


@pytest.mark.django_db
def test_runs_on_postgresql():
    assert connection.vendor == "postgresql"


@pytest.mark.django_db
def test_full_flow_author_reviewers_releaser():
    world = _world()
    cr = _version_in_review(world)
    candidate, baseline = cr.candidate_evaluation, cr.baseline_evaluation
    assert candidate.status == baseline.status == "succeeded" and candidate.examples == TEST_ROWS
    assert candidate.content_hash == cr.version.content_hash and candidate.results.count() == TEST_ROWS
    assert cr.eval_dataset.split == "test" and cr.comparison["examples"] == TEST_ROWS and cr.recommended is False
    _approve(cr, world["reviewer1"])
    _approve(cr, world["reviewer2"])
    version = PromptVersion.objects.get(pk=cr.version_id)
    assert version.status == VersionStatus.APPROVED and version.approved_at is not None
    release = release_version(version, actor=world["releaser"], reason="go live")
    assert ReleaseLabel.objects.get(program=world["program"], name="production").version == version

    second = _version_in_review(world, WINNING_INSTRUCTIONS)
    assert second.base_version == version
    assert second.baseline_evaluation == candidate, "production's evaluation is reused (same content, data, model)"
    assert second.candidate_evaluation.score == 1.0 and second.comparison["significant_gain"] is True
    assert second.recommended is True
    _approve(second, world["reviewer2"])
    _approve(second, world["reviewer3"])
    release_version(second.version, actor=world["releaser"], reason="better refunds")
    back = rollback(world["program"], actor=world["releaser"], reason="refund regressions in production")
    assert back.version == version and back.previous_version == second.version
    assert release.previous_version is None

    actions = list(AuditEvent.objects.filter(program=world["program"]).values_list("action", flat=True))
    assert actions.count("version.approved") == 2 and actions.count("release.created") == 2
    assert actions[-1] == "release.rolled_back"
    assert actions.count("evaluation.succeeded") == 3 == Evaluation.objects.filter(status="succeeded").count()
    assert verify_chain() is None


@pytest.mark.django_db
def test_approval_waits_for_the_system_evaluation():
    world = _world()
    cr = _version_in_review(world, evaluated=False)  # no job ran: this test's transaction never commits
    assert cr.candidate_evaluation.status == cr.baseline_evaluation.status == "queued"
    with pytest.raises(IllegalTransition, match=rf"^the evaluation of the candidate \(evaluation "
                                                rf"{cr.candidate_evaluation_id}\) is queued \(0 of {TEST_ROWS} "):
        _approve(cr, world["reviewer1"])
    assert not Review.objects.filter(change_request=cr).exists()
    _approve(evaluate(cr), world["reviewer1"])
    stale = "0" * 64
    with pytest.raises(IllegalTransition, match=f"^version {cr.version.number} changed since you reviewed it"):
        approve_change_request(cr, actor=world["reviewer2"], password=password(world["reviewer2"]),
                               content_hash=stale)
    assert Review.objects.filter(change_request=cr).count() == 1


@pytest.mark.django_db
def test_frozen_trigger_refuses_raw_update_and_delete():
    world = _world()
    cr = _version_in_review(world)
    _approve(cr, world["reviewer1"])
    _approve(cr, world["reviewer2"])
    for sql, params in [
        ("UPDATE governance_promptversion SET payload = %s WHERE id = %s", ['{"program": {}, "lm": {}}', cr.version_id]),
        ("UPDATE governance_promptversion SET status = 'draft' WHERE id = %s", [cr.version_id]),
        ("DELETE FROM governance_promptversion WHERE id = %s", [cr.version_id]),
    ]:
        with pytest.raises(DatabaseError, match="prompt version is frozen"), transaction.atomic(), \
                connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(sql, params)
    assert PromptVersion.objects.get(pk=cr.version_id).payload == cr.version.payload
    PromptVersion.objects.filter(pk=cr.version_id).update(status=VersionStatus.RETIRED)  # the one allowed move


@pytest.mark.django_db
def test_audit_trigger_refuses_update_and_delete():
    _world()
    event = AuditEvent.objects.order_by("id").first()
    with pytest.raises(DatabaseError, match="audit events are append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError, match="audit events are append-only: DELETE refused"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_auditevent WHERE id = %s", [event.pk])
    assert verify_chain() is None


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_make_exactly_one_transition():
    world = _world()
    cr = _version_in_review(world)  # committed: the local pool ran its evaluations, `evaluate` waited for them
    assert cr.candidate_evaluation.status == cr.baseline_evaluation.status == "succeeded"
    assert cr.candidate_evaluation.worker.startswith("local-eval"), "the committed open dispatched the job"
    reviewers = [world["reviewer1"], world["reviewer2"], world["reviewer3"]]
    content_hash = seen(cr)

    def approver(user_pk: int) -> Callable[[], Any]:
        def work() -> Any:
            user = get_user_model().objects.get(pk=user_pk)
            return approve_change_request(ChangeRequest.objects.get(pk=cr.pk), actor=user, password=password(user),
                                          content_hash=content_hash)
        return work

    results = _run_together([approver(user.pk) for user in reviewers])

    approvals = [r for r in results if isinstance(r, Review)]
    refusals = [r for r in results if isinstance(r, GovernanceError)]
    assert len(approvals) == 2 and len(refusals) == 1, results
    assert isinstance(refusals[0], IllegalTransition)
    assert f"change request {cr.pk} is approved; only open change requests can be approved" in str(refusals[0])
    assert Review.objects.filter(change_request=cr, decision="approve", voided=False).count() == 2
    assert AuditEvent.objects.filter(action="version.approved").count() == 1
    assert AuditEvent.objects.filter(action="change_request.approved").count() == 1
    assert AuditEvent.objects.filter(action="review.approved").count() == 2
    assert PromptVersion.objects.get(pk=cr.version_id).status == VersionStatus.APPROVED
    assert verify_chain() is None  # concurrent writers still form one unbroken chain


@pytest.mark.django_db(transaction=True)
def test_concurrent_version_creation_numbers_without_gaps_or_duplicates():
    world = _world()
    author_pk, program = world["author"].pk, world["program"]

    def creator(i: int) -> Callable[[], Any]:
        def work() -> Any:
            author = get_user_model().objects.get(pk=author_pk)
            return create_version(program, actor=author, payload=payload_with(program, f"Variant {i}.")).number
        return work

    results = _run_together([creator(i) for i in range(4)])
    assert sorted(results) == [1, 2, 3, 4], results
    assert initial_payload(program)["lm"]["model"]
