"""The audit trail: every action's events are hash-chained and sealed, the database refuses to change them, and
signed checkpoints kept outside the database catch what someone with database access could still do: recompute
the chain, forge a tail, remove the newest events."""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from governance.audit import (
    AuditKeyMissing,
    Statement,
    compute_hash,
    event_content,
    record_event,
    sign_statement,
    verify_chain,
)
from governance.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, PromptVersion
from optimizer.bundle import generate_private_key, private_key_pem
from tests.conftest import TEST_AUDIT_KEY
from tests.governance.conftest import TRIGGERS

pytestmark = pytest.mark.django_db


@pytest.fixture
def trail(make_approved, releaser):
    """A realistic trail: users, a program, versions, reviews, an approval and a release."""
    from governance.actions import release_version
    release_version(make_approved(), actor=releaser, reason="go live")
    return list(AuditEvent.objects.order_by("id"))


def test_events_link_each_to_the_previous(trail):
    assert len(trail) > 15
    assert trail[0].prev_hash == GENESIS_HASH
    for previous, event in itertools.pairwise(trail):
        assert event.prev_hash == previous.hash
        assert event.hash == compute_hash(previous.hash, event_content(event))
    assert verify_chain() is None


def test_record_event_needs_an_atomic_block(committed_db):
    """Outside an action's transaction an event could be half of a change; record_event refuses."""
    assert not connection.in_atomic_block
    with pytest.raises(RuntimeError, match="record_event must run inside transaction.atomic"):
        record_event("test.outside", actor=None)
    assert not AuditEvent.objects.exists()


def _sqlite_trigger(name: str) -> str:
    return next(statement for statement in TRIGGERS.SQLITE_CREATE if name in statement)


def _behind_the_trigger(name: str, sql: str, params: list) -> None:
    """What an attacker with database access could do: lift the trigger, change a row, put the trigger back."""
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant; tests/pg covers PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {name}")
        cursor.execute(sql, params)
        cursor.execute(_sqlite_trigger(name))


def test_verify_chain_names_an_altered_event(trail):
    target = trail[5]
    _behind_the_trigger("governance_audit_no_update", "UPDATE governance_auditevent SET reason = %s WHERE id = %s",
                        ["nothing to see here", target.pk])
    broken = verify_chain()
    assert broken is not None and broken.event_id == target.pk
    assert broken.reason == f"event {target.pk} ({target.action}) was altered after it was written"


def test_verify_chain_names_the_gap_of_a_removed_event(trail):
    target = trail[7]
    _behind_the_trigger("governance_audit_no_delete", "DELETE FROM governance_auditevent WHERE id = %s",
                        [target.pk])
    broken = verify_chain()
    assert broken is not None and broken.event_id == trail[8].pk
    assert "does not link to the event before it" in broken.reason


def test_orm_save_and_delete_of_an_event_are_refused(trail):
    event = trail[3]
    event.reason = "rewritten"
    with pytest.raises(PermissionError, match="audit events are append-only"):
        event.save()
    with pytest.raises(PermissionError, match="audit events are append-only"):
        event.delete()


def test_database_refuses_update_and_delete_of_events(trail):
    event = trail[3]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE governance_auditevent SET actor_name = 'someone else' WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_auditevent")
    assert AuditEvent.objects.get(pk=event.pk).reason == event.reason
    assert verify_chain() is None


def test_audit_events_carry_actor_name_and_program(trail, program):
    approved = next(e for e in trail if e.action == "version.approved")
    assert approved.actor_name == "Reviewer2 Example" and approved.program == program
    assert approved.object_type == "PromptVersion"


# --- seals and checkpoints: what an insider with database access can no longer do silently -------------------


@pytest.fixture
def anchor(settings, tmp_path):
    """An export signing key and an anchor file of this test's own; returns the anchor's path."""
    key_path = tmp_path / "signing_key.pem"
    key_path.write_bytes(private_key_pem(generate_private_key()))
    key_path.chmod(0o600)
    settings.GOVERNANCE_SIGNING_KEY_PATH, settings.GOVERNANCE_SIGNING_KEY_PEM = key_path, ""
    settings.GOVERNANCE_AUDIT_ANCHOR_PATH = str(tmp_path / "audit_anchor.jsonl")
    return tmp_path / "audit_anchor.jsonl"


@pytest.fixture
def checkpointed(anchor, make_version):
    """Versions written through the actions, then a checkpoint of the chain: the events, oldest first."""
    for _ in range(3):
        make_version()
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert out.getvalue().startswith("checkpoint #")
    return list(AuditEvent.objects.order_by("id"))


def verify(**options) -> tuple[int, str]:
    """verify_audit with the given options: (exit code, stdout or the error message)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err, **options)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def _sqlite(statements: list[tuple[str, list]], *, lifting: tuple[str, ...]) -> None:
    """Run SQL with the named triggers lifted, as an insider with DDL rights would, then put them back."""
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite variant; tests/pg covers PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN (%s)"
                       % ", ".join("%s" for _ in lifting), list(lifting))
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        for sql, params in statements:
            cursor.execute(sql, params)
        for _, sql in triggers:
            cursor.execute(sql)


def _rewrite_and_rehash(events: list[AuditEvent], index: int, reason: str) -> None:
    """Change one event and recompute its hash and every later one: a chain that links perfectly again."""
    statements, previous = [], events[index - 1].hash
    for event in events[index:]:
        if event is events[index]:
            event.reason = reason
        new_hash = compute_hash(previous, event_content(event))
        statements.append(("UPDATE governance_auditevent SET reason = %s, prev_hash = %s, hash = %s WHERE id = %s",
                           [event.reason, previous, new_hash, event.pk]))
        previous = new_hash
    _sqlite(statements, lifting=("governance_audit_no_update",))


def _sealed_with_test_key(event: AuditEvent) -> bool:
    expected = hmac.new(bytes.fromhex(TEST_AUDIT_KEY), event.hash.encode(), hashlib.sha256).hexdigest()
    return event.seal == expected


def test_every_event_is_sealed_with_the_audit_key(trail):
    assert trail and all(_sealed_with_test_key(event) for event in trail)
    assert {event.seal_key_id for event in trail} == {trail[0].seal_key_id} and len(trail[0].seal_key_id) == 16


def test_an_intact_chain_with_a_checkpoint_passes(checkpointed, anchor, make_version):
    make_version()  # one more event (and more) after the checkpoint
    code, output = verify()
    count, head = AuditEvent.objects.count(), AuditEvent.objects.order_by("-id").first()
    after = count - len(checkpointed)
    assert code == 0 and output.startswith(f"audit chain intact: {count} events\nhead: {head.hash}\n")
    assert (f"checkpoint: {len(checkpointed)} events up to event #{checkpointed[-1].pk} at "
            in output) and output.endswith(f", signature valid and matching; {after} events walked\n")
    line = json.loads(anchor.read_text().splitlines()[-1])
    row = AuditCheckpoint.objects.get()
    assert (line["event_count"], line["last_event_id"], line["head_hash"], line["signature"]) == (
        row.event_count, row.last_event_id, row.head_hash, row.signature) == (
        len(checkpointed), checkpointed[-1].pk, checkpointed[-1].hash, row.signature)
    assert verify(full=True)[0] == 0


def test_a_recomputed_chain_after_rewriting_an_event_is_reported(checkpointed):
    victim = checkpointed[4]
    _rewrite_and_rehash(checkpointed, 4, "nothing to see here")
    head = checkpointed[-1]
    recorded = Statement.from_row(AuditCheckpoint.objects.get()).describe()
    code, message = verify()
    assert code == 1
    assert message.splitlines() == [
        f"audit trail rewritten: event #{head.pk} has hash {AuditEvent.objects.get(pk=head.pk).hash[:16]}..., not "
        f"the {head.hash[:16]}... a checkpoint recorded ({recorded}) (the anchor file's latest checkpoint)",
        f"audit chain broken at event #{victim.pk}: event {victim.pk} ({victim.action}) has a seal that does not "
        f"match its hash: it was altered and re-hashed by someone without the audit key",
    ]
    broken = verify_chain()
    assert broken is not None and broken.event_id == victim.pk


def test_a_recomputed_chain_after_the_last_checkpoint_is_reported_by_its_seal(anchor, make_version):
    for _ in range(2):
        make_version()
    events = list(AuditEvent.objects.order_by("id"))
    _rewrite_and_rehash(events, 6, "rewritten, no checkpoint to compare with")
    assert verify() == (1, f"audit chain broken at event #{events[6].pk}: event {events[6].pk} ({events[6].action}) "
                           f"has a seal that does not match its hash: it was altered and re-hashed by someone "
                           f"without the audit key")


@pytest.mark.parametrize("forged_seal", ["", "wrong key"])
def test_a_forged_backdated_tail_with_a_correct_hash_is_reported(checkpointed, forged_seal):
    head = checkpointed[-1]
    forged = AuditEvent(created_at=head.created_at - timedelta(days=3), actor_name="Reviewer1 Example",
                        action="review.approved", object_type="Review", object_id="999", reason="looks good",
                        prev_hash=head.hash, request_id="")
    forged.hash = compute_hash(head.hash, event_content(forged))
    if forged_seal:
        forged.seal = hmac.new(b"x" * 32, forged.hash.encode(), hashlib.sha256).hexdigest()
        forged.seal_key_id = head.seal_key_id
    forged.save(force_insert=True)  # the database accepts an INSERT: the chain and seals must catch it
    assert verify_chain(check_seals=False) is None  # links and hashes alone say nothing is wrong
    code, message = verify()
    why = ("carries no seal: it was written without the audit key, not by the application" if not forged_seal else
           "has a seal that does not match its hash: it was altered and re-hashed by someone without the audit key")
    assert (code, message) == (1, f"audit chain broken at event #{forged.pk}: event {forged.pk} (review.approved) "
                                  f"{why}")


def test_deleting_the_newest_events_is_reported_as_truncation(checkpointed, settings):
    kept = checkpointed[:-3]
    _sqlite([("DELETE FROM governance_auditevent WHERE id > %s", [kept[-1].pk])],
            lifting=("governance_audit_no_delete",))
    assert verify_chain() is None  # what is left links perfectly
    recorded = Statement.from_row(AuditCheckpoint.objects.get()).describe()
    truncated = (f"audit trail truncated: a checkpoint recorded {recorded}; the database holds {len(kept)} events "
                 f"up to that point and event #{checkpointed[-1].pk} is gone")
    assert verify() == (3, f"{truncated} (the anchor file's latest checkpoint)")
    settings.GOVERNANCE_AUDIT_ANCHOR_PATH = ""  # the checkpoint row in the database says the same
    cp = AuditCheckpoint.objects.get()
    assert verify() == (3, f"{truncated} (checkpoint #{cp.pk})")


def test_a_tampered_anchor_checkpoint_is_refused_by_its_signature(checkpointed, anchor):
    line = json.loads(anchor.read_text())
    line["event_count"] -= 3  # e.g. to cover up three deleted events
    anchor.write_text(json.dumps(line) + "\n")
    code, message = verify()
    claimed = Statement.from_json(line).describe()
    assert (code, message) == (4, f"audit checkpoint refused: the anchor file's latest checkpoint ({claimed}) does "
                                  f"not carry a valid signature (it was altered or forged)")


def test_a_checkpoint_row_signed_by_an_insider_key_is_refused(checkpointed, make_version):
    make_version()
    head = AuditEvent.objects.order_by("-id").first()
    forged = sign_statement(Statement(AuditEvent.objects.count(), head.pk, head.hash,
                                      "2030-01-01T00:00:00.000000+00:00",
                                      ""), generate_private_key())
    AuditCheckpoint.objects.create(created_at="2030-01-01T00:00:00Z", event_count=forged.event_count,
                                   last_event_id=head.pk, head_hash=head.hash, key_fingerprint=forged.key_fingerprint,
                                   signature=forged.signature, origin="command")
    code, message = verify()
    cp = AuditCheckpoint.objects.order_by("-id").first()
    assert code == 4 and message == (f"audit checkpoint refused: checkpoint #{cp.pk} ({forged.describe()}) is signed "
                                     f"by key {forged.key_fingerprint[:16]}..., which is not a trusted key")


def test_no_checkpoint_vouches_for_a_broken_chain(checkpointed, make_version):
    make_version()
    victim = AuditEvent.objects.order_by("-id").first()
    _sqlite([("UPDATE governance_auditevent SET reason = 'edited' WHERE id = %s", [victim.pk])],
            lifting=("governance_audit_no_update",))
    with pytest.raises(CommandError, match=rf"^no checkpoint written: audit chain broken at event #{victim.pk}: "):
        call_command("audit_checkpoint", stdout=io.StringIO())
    assert AuditCheckpoint.objects.count() == 1


def test_checkpoint_rows_are_append_only(checkpointed):
    checkpoint = AuditCheckpoint.objects.get()
    with pytest.raises(PermissionError, match="audit checkpoints are append-only"):
        checkpoint.save()
    for statement in ("UPDATE governance_auditcheckpoint SET event_count = 1",
                      "DELETE FROM governance_auditcheckpoint"):
        with pytest.raises(DatabaseError, match="audit checkpoints are append-only"), transaction.atomic(), \
                connection.cursor() as cursor:
            cursor.execute(statement)
    if connection.vendor == "sqlite":
        with pytest.raises(DatabaseError, match="REPLACE of an existing checkpoint refused"), transaction.atomic(), \
                connection.cursor() as cursor:
            cursor.execute("INSERT OR REPLACE INTO governance_auditcheckpoint (id, created_at, event_count, "
                           "last_event_id, head_hash, key_fingerprint, signature, origin) "
                           "VALUES (%s, '2030-01-01', 1, 1, 'x', 'x', 'x', 'x')", [checkpoint.pk])
    assert AuditCheckpoint.objects.get().event_count == checkpoint.event_count


def test_without_an_audit_key_audited_changes_are_refused(settings, tmp_path, make_version):
    before = PromptVersion.objects.count()
    settings.GOVERNANCE_AUDIT_KEY, settings.GOVERNANCE_AUDIT_KEY_PATH = "", tmp_path / "audit_key"
    settings.GOVERNANCE_AUDIT_KEY_AUTOCREATE = False
    with pytest.raises(AuditKeyMissing) as excinfo, transaction.atomic():
        make_version()
    assert isinstance(excinfo.value, ImproperlyConfigured) and excinfo.value.http_status == 503
    assert str(excinfo.value) == (f"no audit key: {tmp_path / 'audit_key'} does not exist and GOVERNANCE_AUDIT_KEY "
                                  "is empty; audited changes are refused until one exists (create it with "
                                  "`python manage.py generate_audit_key`)")
    assert PromptVersion.objects.count() == before

    settings.GOVERNANCE_AUDIT_KEY_AUTOCREATE = True  # DEBUG's default: the first audited write creates the key
    make_version()
    key_file = tmp_path / "audit_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    event = AuditEvent.objects.order_by("-id").first()
    secret = bytes.fromhex(key_file.read_text().strip())
    assert event.seal == hmac.new(secret, event.hash.encode(), hashlib.sha256).hexdigest()


def test_generate_audit_key_writes_once(settings, tmp_path):
    settings.GOVERNANCE_AUDIT_KEY, settings.GOVERNANCE_AUDIT_KEY_PATH = "", tmp_path / "audit_key"
    out = io.StringIO()
    call_command("generate_audit_key", stdout=out)
    first = (tmp_path / "audit_key").read_text()
    assert out.getvalue().startswith(f"wrote audit key to {tmp_path / 'audit_key'} (mode 600), id ")
    with pytest.raises(CommandError, match="an audit key already exists at .* refusing to overwrite it"):
        call_command("generate_audit_key", stdout=io.StringIO())
    call_command("generate_audit_key", if_missing=True, stdout=io.StringIO())
    assert (tmp_path / "audit_key").read_text() == first


def test_seals_made_with_a_retired_key_still_verify(settings, tmp_path, checkpointed, make_version):
    retired = tmp_path / "retired_audit_key"
    retired.write_text(TEST_AUDIT_KEY + "\n")
    settings.GOVERNANCE_AUDIT_KEY = "b2" * 32  # rotated: new events are sealed with the new key
    make_version()
    assert verify(full=True)[0] == 1  # the old seals no longer verify without the old key...
    settings.GOVERNANCE_AUDIT_RETIRED_KEY_PATHS = [str(retired)]
    assert verify(full=True)[0] == 0  # ...and do with it
    assert len(set(AuditEvent.objects.values_list("seal_key_id", flat=True))) == 2


def test_a_checkpoint_is_written_after_commit_every_n_events(settings, anchor, make_version, monkeypatch,
                                                             django_capture_on_commit_callbacks):
    settings.GOVERNANCE_AUDIT_CHECKPOINT_EVERY = 5
    monkeypatch.setattr("governance.audit._retry_after", 0)  # no back-off left over from an earlier test's database
    with django_capture_on_commit_callbacks(execute=True):
        make_version()
    first = AuditCheckpoint.objects.get()
    assert first.origin == "auto" and first.last_event_id == AuditEvent.objects.order_by("-id").first().pk
    with django_capture_on_commit_callbacks(execute=True):
        make_version()  # fewer than 5 events since: no checkpoint
    assert AuditCheckpoint.objects.count() == 1
    assert len(anchor.read_text().splitlines()) == 1 and verify()[0] == 0


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append({"event": self.headers["X-Event"], "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_checkpoints_are_posted_to_the_receiver(settings, anchor, make_version):
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.GOVERNANCE_AUDIT_ANCHOR_URL = f"http://127.0.0.1:{server.server_port}/anchor"
        _Receiver.received.clear()
        make_version()
        call_command("audit_checkpoint", stdout=io.StringIO())
    finally:
        server.shutdown()
        server.server_close()
    assert _Receiver.received == [{"event": "audit.checkpoint", "body": json.loads(anchor.read_text())}]


# --- the portal's audit page shows checkpoint status, never re-walking the chain ---------------------------------


def test_audit_page_shows_the_checkpoint_status(client, auditor, pw, anchor, make_version):
    make_version()
    assert client.login(username="auditor", password=pw(auditor))
    page = client.get("/audit/").content.decode()
    assert "no checkpoint yet" in page
    call_command("audit_checkpoint", stdout=io.StringIO())
    checkpoint = AuditCheckpoint.objects.get()
    make_version()
    after = AuditEvent.objects.filter(id__gt=checkpoint.last_event_id).count()
    page = client.get("/audit/").content.decode()
    assert (f"{checkpoint.event_count} events up to #{checkpoint.last_event_id}, signature valid and the chain "
            f"still ends in the hash it recorded") in page
    assert after == 1 and "1 event since" in page and 'class="badge badge-intact">verified' in page

    _sqlite([("DELETE FROM governance_auditevent WHERE id > %s", [checkpoint.last_event_id - 2])],
            lifting=("governance_audit_no_delete",))
    page = client.get("/audit/").content.decode()
    assert "audit trail truncated: a checkpoint recorded" in page and "badge-broken" in page


def test_without_an_audit_key_the_portal_answers_503_naming_the_command(client, author, pw, make_version, settings,
                                                                        tmp_path):
    draft = make_version()
    settings.GOVERNANCE_AUDIT_KEY, settings.GOVERNANCE_AUDIT_KEY_PATH = "", tmp_path / "absent"
    settings.GOVERNANCE_AUDIT_KEY_AUTOCREATE = False
    assert client.login(username="author", password=pw(author))
    response = client.post(f"/programs/{draft.program.slug}/versions/{draft.number}/submit/",
                           {"title": "Please review", "impact": "low"})
    assert response.status_code == 503 and b"generate_audit_key" in response.content
    assert not AuditEvent.objects.filter(action="change_request.opened").exists()


def test_celery_beat_writes_checkpoints_on_a_schedule(settings, anchor, make_version):
    from governance.tasks import audit_checkpoint

    assert settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]["task"] == "governance.tasks.audit_checkpoint"
    make_version()
    result = audit_checkpoint.apply().get()
    checkpoint = AuditCheckpoint.objects.get()
    assert result == {"checkpoint": checkpoint.pk, "event_count": AuditEvent.objects.count(),
                      "last_event_id": AuditEvent.objects.order_by("-id").first().pk}
    assert checkpoint.origin == "schedule" and audit_checkpoint.apply().get() is None  # nothing new since


def test_full_walks_the_events_a_checkpoint_vouches_for(checkpointed):
    """The default starts at the last good checkpoint; --full (nightly under beat) re-reads every event, so an
    old event edited without re-hashing is found there too."""
    victim = checkpointed[2]
    _sqlite([("UPDATE governance_auditevent SET reason = 'edited' WHERE id = %s", [victim.pk])],
            lifting=("governance_audit_no_update",))
    assert verify(full=True) == (1, f"audit chain broken at event #{victim.pk}: event {victim.pk} ({victim.action}) "
                                    "was altered after it was written")
