"""Per-request context (client IP, request id) that actions record in audit events, and the first line of
defence against hostile requests.

`HostileInputMiddleware` runs before everything else: it fixes the request id (the client's X-Request-ID when
it is short and plain, a fresh one otherwise), refuses bodies over GOVERNANCE_MAX_BODY_BYTES with 413 before
anything reads them, and refuses NUL characters in the path or query parameters (PostgreSQL cannot compare
text with a NUL in it) with 400. API errors are JSON (governance.api.errors' shape), portal errors plain text.

The client address comes from X-Forwarded-For only when the direct peer is one of GOVERNANCE_TRUSTED_PROXIES
(CIDRs); anyone else could write any address into the audit trail. Every address is validated, so the audit
row's inet column never meets "not-an-ip".
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse

from governance.request_context import current_request_context, current_request_id  # noqa: F401  (re-exported)
from governance.request_context import state as _local

logger = logging.getLogger(__name__)
# One line per request (method, path, status, milliseconds, request id): on at INFO with LOG_FORMAT=json, where
# it is the application's structured access log; the dev server prints its own otherwise (settings.LOGGING).
access_log = logging.getLogger("governance.access")


REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- client address -----------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def trusted_proxies() -> tuple[IPNetwork, ...]:
    """settings.GOVERNANCE_TRUSTED_PROXIES as networks (a bad entry is a configuration error, raised)."""
    return _networks(tuple(getattr(settings, "GOVERNANCE_TRUSTED_PROXIES", ()) or ()))


def valid_ip(value: str | None) -> str | None:
    """`value` as a normalized IP address, or None when it is not one."""
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def _trusted(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in networks if network.version == ip.version)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest untrusted address of
    X-Forwarded-For read from the right (the entries a client wrote itself are on the left). A malformed chain
    is ignored: the peer's address is recorded, never a string the client chose."""
    peer = valid_ip(request.META.get("REMOTE_ADDR"))
    networks = trusted_proxies()
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if peer is None or not forwarded or not _trusted(peer, networks):
        return peer
    hops = [valid_ip(hop) for hop in forwarded.split(",")]
    if None in hops:
        logger.warning("ignoring a malformed X-Forwarded-For from proxy %s: %r", peer, forwarded[:200])
        return peer
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop
    return hops[0]


def request_id_of(request: HttpRequest) -> str:
    """The client's X-Request-ID when it is 1-64 plain characters, else a new one (logs and audit rows must not
    carry whatever a client sends)."""
    given = request.META.get(REQUEST_ID_HEADER, "")
    return given if REQUEST_ID_PATTERN.fullmatch(given) else uuid.uuid4().hex


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record (``-`` outside a request), for the formatters in settings.LOGGING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


# --- middleware ---------------------------------------------------------------------------------------------


def _refusal(request: HttpRequest, status: int, code: str, detail: str, field: str | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        body: dict[str, object] = {"code": code, "detail": detail}
        if field:
            body.update(field=field, errors={field: [detail]})
        return JsonResponse(body, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


class HostileInputMiddleware:
    """First in MIDDLEWARE: request id, body size and NUL checks before anything reads the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META[REQUEST_ID_HEADER] = request_id = request_id_of(request)
        started = time.perf_counter()
        response = self._refuse(request) or self.get_response(request)
        response["X-Request-ID"] = request_id
        if access_log.isEnabledFor(logging.INFO):
            ms = round((time.perf_counter() - started) * 1000, 1)
            access_log.info("%s %s %s %sms", request.method, request.path, response.status_code, ms,
                            extra={"request_id": request_id, "method": request.method, "path": request.path,
                                   "status": response.status_code, "ms": ms})
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """An exception no API view turned into a response: a JSON body (logged with its traceback when it is
        the server's fault). Portal pages keep Django's handling (and its django.request log record)."""
        if not request.path.startswith("/api/"):
            return None
        from governance.api.errors import response_for_unhandled

        return response_for_unhandled(request, exception)

    def _refuse(self, request: HttpRequest) -> HttpResponse | None:
        limit = int(getattr(settings, "GOVERNANCE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refusal(request, 400, "invalid", "Content-Length must be an integer")
        if length > limit:
            return _refusal(request, 413, "too_large", f"request body of {length} bytes exceeds the limit of "
                                                       f"{limit} bytes")
        if "\x00" in request.path:
            return _refusal(request, 400, "invalid", "the path must not contain NUL characters")
        try:
            query = list(request.GET.lists())
        except SuspiciousOperation as exc:  # e.g. more parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS
            return _refusal(request, 400, "invalid", str(exc))
        for name, values in query:
            if "\x00" in name or any("\x00" in value for value in values):
                field = name.replace("\x00", "")
                return _refusal(request, 400, "invalid", f"{field}: must not contain NUL characters", field)
        return None


class RequestContextMiddleware:
    """Keeps the client IP and request id in a thread local for the audit trail and the log records."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        _local.ip = client_ip(request)
        _local.request_id = request_id = request_id_of(request)
        request.META[REQUEST_ID_HEADER] = request_id
        try:
            response = self.get_response(request)
        finally:
            _local.ip = None
            _local.request_id = None
        response["X-Request-ID"] = request_id
        return response
