"""What a webhook subscription may be: its signing secret and its destination (shape, scheme, and every address
its host resolves to). Checked when subscribing (governance.actions.webhooks) and again at every delivery
(governance.webhooks), so it sits below both.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import socket
import urllib.parse

from django.conf import settings

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_problem(secret: str) -> str | None:
    """Why `secret` cannot sign, or None. Standard Webhooks base64-decodes the secret after an optional whsec_
    prefix, so it must be base64 (hex works too: its digits are base64 characters)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", raw):
        return "secret must be base64, optionally prefixed whsec_ (a Standard Webhooks secret)"
    if len(base64.b64decode(raw + "==")) < 16:
        return "secret must decode to at least 16 bytes"
    return None



# --- destinations -------------------------------------------------------------------------------------------


class UnsafeDestination(ValueError):
    """A webhook URL the server must not call (scheme, or an address inside the network)."""


def _blocked_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


def check_url(url: str) -> urllib.parse.SplitResult:
    """The URL's parts, when its shape is acceptable (http(s), a host, no credentials, https unless allowed)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise UnsafeDestination(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("url must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise UnsafeDestination("url must not carry credentials")
    if parts.scheme == "http" and not (settings.DEBUG or getattr(settings, "GOVERNANCE_WEBHOOK_ALLOW_HTTP", False)):
        raise UnsafeDestination("url must use https (plain http needs GOVERNANCE_WEBHOOK_ALLOW_HTTP)")
    return parts


def resolve_destination(url: str) -> tuple[urllib.parse.SplitResult, list[str]]:
    """The URL's parts and the addresses it may be called at: every address its host resolves to must be
    public unless GOVERNANCE_WEBHOOK_ALLOW_PRIVATE (one internal address among public ones is enough to refuse)."""
    parts = check_url(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeDestination(f"url host {parts.hostname} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not getattr(settings, "GOVERNANCE_WEBHOOK_ALLOW_PRIVATE", False):
        for address in addresses:
            kind = _blocked_kind(ipaddress.ip_address(address))
            if kind:
                raise UnsafeDestination(f"url host {parts.hostname} resolves to {address}, a {kind} address; "
                                        "webhooks may only call public addresses (GOVERNANCE_WEBHOOK_ALLOW_PRIVATE)")
    return parts, addresses
