"""The client address: X-Forwarded-For only from GOVERNANCE_TRUSTED_PROXIES, always a valid address."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from governance.middleware import client_ip
from governance.models import AuditEvent
from tests.governance import hostile
from tests.governance.export_helpers import fast_password_hashing  # noqa: F401  (autouse)


def _ip(peer: str, forwarded: str | None = None) -> str | None:
    headers = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **headers))


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.GOVERNANCE_TRUSTED_PROXIES = []
    assert _ip("198.51.100.7", "203.0.113.9") == "198.51.100.7"
    assert _ip("10.0.0.2", "203.0.113.9") == "10.0.0.2"


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("10.0.0.2", "203.0.113.9", "203.0.113.9"),                      # one trusted proxy
    ("10.0.0.2", "1.1.1.1, 203.0.113.9, 10.0.0.3", "203.0.113.9"),   # the client wrote 1.1.1.1 itself
    ("10.0.0.2", "10.0.0.4, 10.0.0.3", "10.0.0.4"),                  # every hop ours: the farthest one
    ("10.0.0.2", " 2001:db8::1 ", "2001:db8::1"),
    ("10.0.0.2", "not-an-ip", "10.0.0.2"),                           # malformed: the peer, never the text
    ("10.0.0.2", "203.0.113.9, <script>", "10.0.0.2"),
    ("10.0.0.2", "", "10.0.0.2"),
    ("198.51.100.7", "203.0.113.9", "198.51.100.7"),                 # the peer is no proxy of ours
    ("not-an-address", "203.0.113.9", None),
])
def test_trusted_proxies_are_believed_from_the_right(settings, peer, forwarded, expected):
    settings.GOVERNANCE_TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]
    assert _ip(peer, forwarded) == expected


def test_audit_rows_record_the_forwarded_client_only_behind_a_trusted_proxy(committed_db, live_server, settings):
    world = hostile.seed_world()
    post = hostile.Case("spoof", "POST", f"{hostile.V1}/versions/", world.version_body("From a client."),
                        {"X-Forwarded-For": "203.0.113.9"})
    assert hostile.send(live_server.url, post, world.token).status == 201
    settings.GOVERNANCE_TRUSTED_PROXIES = ["127.0.0.1/32"]  # now the live server's peer is our proxy
    behind = hostile.Case("proxied", "POST", f"{hostile.V1}/versions/", world.version_body("Through the proxy."),
                          {"X-Forwarded-For": "203.0.113.9"})
    assert hostile.send(live_server.url, behind, world.token).status == 201
    rows = AuditEvent.objects.filter(action="version.created").exclude(request_id="").order_by("id")
    assert [(json.loads(json.dumps(r.after))["number"], r.ip_address) for r in rows][-2:] == [
        (2, "127.0.0.1"), (3, "203.0.113.9")]
