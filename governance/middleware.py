"""Per-request context (client IP, request id) that actions record in audit events."""

from __future__ import annotations

import threading
import uuid
from typing import Callable

from django.http import HttpRequest, HttpResponse

_local = threading.local()


def current_request_context() -> dict[str, str | None]:
    """The IP and request id of the request being served on this thread, if any."""
    return {"ip": getattr(_local, "ip", None), "request_id": getattr(_local, "request_id", None)}


def client_ip(request: HttpRequest) -> str | None:
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR")


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        _local.ip = client_ip(request)
        _local.request_id = request.META.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
        try:
            response = self.get_response(request)
        finally:
            _local.ip = None
            _local.request_id = None
        response["X-Request-ID"] = request.META.get("HTTP_X_REQUEST_ID") or ""
        return response
