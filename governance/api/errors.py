"""One place that turns domain errors into HTTP responses (400/403/404/409), never a 500."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from governance.errors import GovernanceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, GovernanceError):
        return Response(exc.as_dict(), status=exc.http_status)
    return drf_exception_handler(exc, context)
