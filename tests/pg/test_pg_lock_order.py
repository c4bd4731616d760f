"""Row locks never deadlock with the audit chain's lock (PostgreSQL).

The interleaving bench/write_throughput.py hit: transaction B locks a program row (version numbering) and then
waits for the chain lock; transaction A holds the chain lock and inserts an audit event pointing at that program,
which takes FOR KEY SHARE on the program row. With FOR UPDATE, A waits for B and B for A: PostgreSQL aborts one
with "deadlock detected". With FOR NO KEY UPDATE (governance.actions._common.lock) A goes on, commits, and B
follows.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from governance.actions import create_program, create_user_with_roles, setup_role_groups
from governance.actions._common import lock
from governance.audit import record_event
from governance.models import AuditEvent
from tests.governance.conftest import INLINE_SPEC

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]


def test_a_program_lock_and_the_chain_lock_do_not_deadlock():
    setup_role_groups()
    author = create_user_with_roles(actor=None, username="author", password="Author-Secret-42", roles=["author"])
    program = create_program(actor=author, slug="locks", name="Locks", spec=INLINE_SPEC)
    program_locked, chain_taken = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def b_numbers_a_version() -> None:
        try:
            with transaction.atomic():
                lock(program)
                program_locked.set()
                assert chain_taken.wait(10)
                record_event("bench.b", actor=author, obj=program, program=program)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)
        finally:
            connection.close()

    def a_writes_an_event_on_the_program() -> None:
        try:
            assert program_locked.wait(10)
            with transaction.atomic():
                record_event("bench.a", actor=author, obj=program, program=program)
                chain_taken.set()
        except BaseException as error:  # noqa: BLE001
            chain_taken.set()
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=b_numbers_a_version), threading.Thread(target=a_writes_an_event_on_the_program)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert list(AuditEvent.objects.filter(action__startswith="bench.").values_list("action", flat=True)
                .order_by("id")) == ["bench.a", "bench.b"]
