"""The request being served on this thread: client IP and request id, read by the audit trail and log records.

Set by governance.middleware.RequestContextMiddleware; kept apart from the middleware so that the audit writer
and the actions below the web layer can read it without importing the web layer.
"""

from __future__ import annotations

import threading

state = threading.local()


def current_request_context() -> dict[str, str | None]:
    """The IP and request id of the request being served on this thread, if any."""
    return {"ip": getattr(state, "ip", None), "request_id": getattr(state, "request_id", None)}


def current_request_id() -> str | None:
    return getattr(state, "request_id", None)
