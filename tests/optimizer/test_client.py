"""PromptClient against a live governance server: fetch and verify, ETag revalidation (304), fallback to the
last good bundle on disk when the server is down, tampered bundles refused, and running the fetched prompt."""

from __future__ import annotations

import json
import logging

import pytest
from pytest_django.live_server_helper import LiveServer
from rest_framework.authtoken.models import Token

from optimizer.bundle import verify_bundle
from optimizer.client import PromptClient, PromptClientError
from optimizer.errors import BundleError
from optimizer.lm import LM
from tests.governance.export_helpers import (  # noqa: F401  (fast_password_hashing is an autouse fixture)
    approved,
    fast_password_hashing,
    make_team,
    release,
    signing_key_settings,
)

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StoppableServer(LiveServer):
    """pytest-django's live server, stoppable in the middle of a test (and again at teardown)."""

    stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            super().stop()


@pytest.fixture
def server(transactional_db, tmp_path):
    """A live server of the app on a free port; the test's rows are committed so its threads see them."""
    from django.core.cache import cache
    from django.db import connection

    from governance.api.bundles import forget
    from tests.governance.conftest import flush_past_integrity_triggers

    cache.clear()
    forget()
    with signing_key_settings(tmp_path):
        live = StoppableServer("127.0.0.1:0")
        yield live
        live.stop()
    cache.clear()
    forget()
    if connection.vendor == "sqlite":  # the integrity triggers refuse the teardown flush's deletes
        flush_past_integrity_triggers()


@pytest.fixture
def deployed():
    """A program whose production label serves an approved version; a service account's token."""
    team = make_team()
    version = approved(team, instructions="Route the ticket to exactly one team.")
    release(team, version)
    token = Token.objects.create(user=team.reviewer1).key  # any program member; a service user in production
    return team, version, token


def _public_key() -> str:
    from governance.signing import public_key

    return public_key()


def test_fetch_verify_revalidate_and_fall_back_to_disk(server, deployed, tmp_path, caplog):
    _team, version, token = deployed
    clock = Clock()
    client = PromptClient(server.url, token, "triage", "production", trusted_public_key=_public_key(), ttl=60,
                          cache_dir=tmp_path / "cache", clock=clock)
    verified = client.bundle()
    assert (client.last_source, verified.version_number, verified.content_hash) == (
        "server", version.number, version.content_hash)
    on_disk = json.loads(client.cache_path.read_text())
    assert on_disk["etag"].startswith('"') and verify_bundle(on_disk["bundle"]).content_hash == version.content_hash
    # Within the TTL: memory, no request.
    clock.now += 30
    client.bundle()
    assert client.last_source == "memory"
    # After the TTL: revalidated with If-None-Match -> 304 keeps the bundle.
    clock.now += 31
    assert client.bundle().content_hash == version.content_hash and client.last_source == "not-modified"
    # The server goes away: the client in memory keeps serving, a new one falls back to disk, with a warning.
    server.stop()
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="optimizer.client"):
        assert client.bundle().content_hash == version.content_hash
        assert client.last_source == "memory-fallback"
        restarted = PromptClient(server.url, token, "triage", "production", trusted_public_key=_public_key(),
                                 cache_dir=tmp_path / "cache", timeout=2)
        assert restarted.bundle().content_hash == version.content_hash
    assert restarted.last_source == "disk-fallback"
    assert any("server unreachable" in r.getMessage() and "from" in r.getMessage() for r in caplog.records)
    # Nothing cached anywhere and no server: a clear error.
    empty = PromptClient(server.url, token, "triage", "production", trusted_public_key=_public_key(),
                         cache_dir=tmp_path / "empty", timeout=2)
    with pytest.raises(PromptClientError, match="no cached bundle of triage@production is available"):
        empty.bundle()


def test_new_release_is_picked_up_after_the_ttl(server, deployed, tmp_path):
    team, first, token = deployed
    clock = Clock()
    client = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path, ttl=10,
                          clock=clock)
    assert client.bundle().version_number == first.number
    second = approved(team, instructions="Pick the single best team for the ticket.")
    release(team, second)
    assert client.bundle().version_number == first.number  # still within the TTL
    clock.now += 11
    assert client.bundle().version_number == second.number and client.last_source == "server"


def test_tampered_or_untrusted_bundles_are_never_used(server, deployed, tmp_path, caplog):
    _team, _version, token = deployed
    good = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path)
    good.bundle()
    # Tamper with the cached file: the server is down, and the altered file must not be used.
    document = json.loads(good.cache_path.read_text())
    document["bundle"]["payload"]["program"]["predictors"][0]["signature"]["instructions"] = "Approve refunds."
    good.cache_path.write_text(json.dumps(document))
    server.stop()
    offline = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path,
                           timeout=2)
    with caplog.at_level(logging.ERROR, logger="optimizer.client"), pytest.raises(PromptClientError):
        offline.bundle()
    assert any("ignoring the cached bundle" in r.getMessage() for r in caplog.records)


def test_bundle_signed_by_another_key_is_rejected(server, deployed, tmp_path):
    from optimizer.bundle import generate_private_key, public_key_b64

    _team, _version, token = deployed
    stranger = public_key_b64(generate_private_key())
    client = PromptClient(server.url, token, "triage", trusted_public_key=stranger, cache_dir=tmp_path)
    with pytest.raises(PromptClientError, match="failed verification.*untrusted key"):
        client.bundle()
    assert not client.cache_path.exists()


def test_credentials_problems_are_raised_not_hidden(server, deployed, tmp_path):
    team, _version, _token = deployed
    with pytest.raises(PromptClientError, match=r"HTTP 40[13]"):  # 401 once API keys answer with a challenge
        PromptClient(server.url, "not-a-token", "triage", trusted_public_key=_public_key(), cache_dir=tmp_path).bundle()
    outsider = Token.objects.create(user=team.outsider).key
    with pytest.raises(PromptClientError, match="HTTP 404"):
        PromptClient(server.url, outsider, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path).bundle()


def test_runtime_runs_the_fetched_prompt(server, deployed, tmp_path, fake_server, fake_lm_config):
    _team, _version, token = deployed
    fake_server.responder = lambda prompt, request: "billing"
    client = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path)
    runtime = client.runtime(lm=LM(fake_lm_config()))
    prediction = runtime.run({"ticket": "I was charged twice"})
    assert prediction.ok and prediction.outputs["category"] == "billing"
    assert "Route the ticket to exactly one team." in json.dumps(fake_server.requests[-1])


def test_a_client_needs_a_pinned_key_or_an_explicit_logged_opt_out(server, deployed, tmp_path, caplog):
    _team, version, token = deployed
    with pytest.raises(BundleError, match="needs trusted_public_key"):
        PromptClient(server.url, token, "triage", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="optimizer.client"):
        unpinned = PromptClient(server.url, token, "triage", cache_dir=tmp_path, allow_any_signing_key=True)
    assert any("accepts bundles signed by ANY key" in r.getMessage() for r in caplog.records)
    assert unpinned.bundle().content_hash == version.content_hash
    pinned = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path)
    assert pinned.trusted_fingerprint == pinned.bundle().key_fingerprint


def test_a_cached_bundle_with_a_duplicate_key_is_not_used(server, deployed, tmp_path, caplog):
    """First "payload" tampered, last original: a lenient parser keeps the last and would verify it."""
    _team, _version, token = deployed
    good = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path)
    good.bundle()
    text = good.cache_path.read_text()
    document = json.loads(text)
    tampered = json.loads(json.dumps(document["bundle"]["payload"]))
    tampered["program"]["predictors"][0]["signature"]["instructions"] = "Approve refunds."
    good.cache_path.write_text(text.replace('"payload": ', f'"payload": {json.dumps(tampered)}, "payload": ', 1))
    assert verify_bundle(json.loads(good.cache_path.read_text())["bundle"])  # lenient parsing accepts it
    server.stop()
    offline = PromptClient(server.url, token, "triage", trusted_public_key=_public_key(), cache_dir=tmp_path,
                           timeout=2)
    with caplog.at_level(logging.ERROR, logger="optimizer.client"), pytest.raises(PromptClientError):
        offline.bundle()
    assert any("has the key 'payload' twice" in r.getMessage() for r in caplog.records)
