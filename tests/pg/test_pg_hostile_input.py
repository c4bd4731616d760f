"""The hostile-input corpus (tests/governance/hostile.py) against a live server on PostgreSQL.

PostgreSQL refuses more than SQLite: NUL characters in text, UTC offsets beyond +-15:59, integers past bigint,
"not-an-ip" in an inet column. Each of those once surfaced as a 500 here; the corpus must get none.
"""

from __future__ import annotations

import pytest
from django.db import connection

from governance.models import AuditEvent
from tests.governance import hostile
from tests.governance.export_helpers import fast_password_hashing  # noqa: F401  (autouse)


@pytest.fixture
def world(transactional_db, live_server):
    return hostile.seed_world()


def test_corpus_gets_no_server_error_and_json_errors_on_postgresql(world, live_server):
    assert connection.vendor == "postgresql"
    sent, problems = hostile.replay(live_server.url, world)
    assert sent > 200
    assert not problems, "\n".join(problems)
    failed = AuditEvent.objects.filter(action="signature.failed").get()  # recorded despite X-Forwarded-For junk
    assert failed.ip_address == "127.0.0.1"
    created = AuditEvent.objects.filter(action="version.created").exclude(request_id="")
    assert created.count() == 4 and set(created.values_list("ip_address", flat=True)) == {"127.0.0.1"}
