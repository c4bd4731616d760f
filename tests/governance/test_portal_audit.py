"""The audit trail as people read it: a sentence per event, links to the affected objects, only the changed
values (old and new), CSV files named after their filter, ISO 8601 times, and the export signing key's page."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, datetime

import pytest

from governance.actions import releases as release_actions
from governance.models import AuditEvent
from governance.audit_text import changes, sentence
from governance.templatetags.portal import utc
from optimizer.bundle import generate_private_key, key_fingerprint, private_key_pem, public_key_raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def signing_key(settings, tmp_path):
    key = generate_private_key()
    path = tmp_path / "signing_key.pem"
    path.write_bytes(private_key_pem(key))
    path.chmod(0o600)
    settings.GOVERNANCE_SIGNING_KEY_PATH = path
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    return key


@pytest.fixture
def released(make_approved, releaser):
    v1, v2 = make_approved(), make_approved()
    release_actions.release_version(v1, actor=releaser, reason="baseline")
    release_actions.release_version(v2, actor=releaser, reason="better answers")
    return v1, v2


def _login(client, user, pw):
    assert client.login(username=user.username, password=pw(user))
    return client


def test_each_event_reads_as_a_sentence_with_only_what_changed(released):
    moved = AuditEvent.objects.filter(action="release.created").order_by("id").last()
    assert sentence(moved, "label move 2") == "Releaser Example released version 2 as production"
    assert [(c.key, c.old, c.new) for c in changes(moved.before, moved.after)][:2] == [
        ("version", "1", "2"), ("content_hash", moved.before["content_hash"], moved.after["content_hash"])]
    unknown = AuditEvent(action="membership.granted", actor_name="Ada Admin", object_type="ProgramMembership",
                         object_id="4")
    assert sentence(unknown, "programmembership 4") == "Ada Admin granted membership (programmembership 4)"


def test_the_trail_links_objects_and_highlights_changes(client, auditor, pw, released):
    v1, v2 = released
    page = _login(client, auditor, pw).get("/audit/").content.decode()
    assert "released version 2 as production" in page and "Reason: “better answers”" in page
    assert f'href="/programs/{v2.program.slug}/versions/{v2.number}/">open version {v2.number}</a>' in page
    assert re.search(r'href="/change-requests/\d+/">open change request \d+</a>', page)
    assert f'href="/programs/{v2.program.slug}/releases/">open label move' in page
    assert '<del class="diff-del"><span class="sr-only">before: </span>1</del> → <ins class="diff-ins">' in page
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ</time>', page)


def test_csv_is_named_after_its_filter(client, auditor, pw, released):
    _login(client, auditor, pw)
    response = client.get("/audit.csv", {"action": "release.", "actor": "Releaser Example", "since": "2020-01-02"})
    name = re.search(r'filename="([^"]+)"', response["Content-Disposition"]).group(1)
    assert re.fullmatch(r"audit-all-actor-Releaser-Example-action-release.-from-2020-01-02-\d{8}T\d{6}Z\.csv", name), name
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["action"] for r in rows] == ["release.created", "release.created"]
    searched = client.get("/audit.csv", {"text": "better answers"})
    assert re.search(r'filename="audit-all-search-better-answers-\d{8}T\d{6}Z\.csv"', searched["Content-Disposition"])
    assert [r["reason"] for r in csv.DictReader(io.StringIO(searched.content.decode()))] == ["better answers"]
    program = released[0].program
    unfiltered = client.get(f"/programs/{program.slug}/audit.csv")["Content-Disposition"]
    assert re.search(rf'filename="audit-{program.slug}-\d{{8}}T\d{{6}}Z\.csv"', unfiltered)


def test_the_signing_key_page_shows_the_key_its_fingerprint_and_how_to_verify(client, author, pw, signing_key):
    page = _login(client, author, pw).get("/signing-key/").content.decode()
    raw = public_key_raw(signing_key)
    assert key_fingerprint(raw) in page and base64.b64encode(raw).decode() in page
    assert "python manage.py verify_bundle" in page and "trusted_public_key=" in page


def test_without_a_signing_key_the_page_says_what_to_do(client, author, pw, settings, tmp_path):
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "missing.pem"
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    response = _login(client, author, pw).get("/signing-key/")
    assert response.status_code == 503 and b"generate_signing_key" in response.content
    assert str(tmp_path).encode() not in response.content  # no server path on the page


def test_times_are_iso_8601_utc():
    assert str(utc(datetime(2026, 1, 2, 9, 0, 5, tzinfo=UTC))) == (
        '<time datetime="2026-01-02T09:00:05Z">2026-01-02T09:00:05Z</time>')
