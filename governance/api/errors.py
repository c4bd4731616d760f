"""One place that turns errors into HTTP responses (400/403/404/409), never a 500 for anything a client sends.

Every error body has the same shape, so clients need one parser::

    {"code": "invalid", "detail": "row 17: missing field 'category'", "field": "rows",
     "errors": {"rows": ["row 17: missing field 'category'"]}}

`field` and `errors` appear when the error is about particular input fields. Domain errors
(governance.errors) carry their own HTTP status: 400 invalid input, 403 permission (including segregation of
duties and failed re-authentication), 404 not found, 409 an illegal workflow step, 413 a body over the limit.
Anything unexpected is the server's fault: logged with its traceback and request id, answered with a 500 JSON
body that carries the request id (never the exception text). Messages may echo client input, so every text is
made encodable first (a lone surrogate must not turn a 400 into a 500).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import BadRequest, ImproperlyConfigured, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from governance.api.parsers import safe_text
from governance.errors import GovernanceError
from governance.request_context import current_request_id
from optimizer import OptimizerError

logger = logging.getLogger(__name__)

NON_FIELD = "non_field_errors"


def error_body(code: str, detail: str, *, field: str | None = None,
               errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": safe_text(detail)}
    if field:
        body["field"] = safe_text(field)
    if errors:
        body["errors"] = {safe_text(key): [safe_text(str(m)) for m in messages] for key, messages in errors.items()}
    return body


def server_error_body(request_id: str | None) -> dict[str, Any]:
    return {"code": "server_error", "request_id": request_id or "",
            "detail": f"internal error; the server logged it with request id {request_id}"}


def response_for_unhandled(request: HttpRequest, exc: Exception) -> JsonResponse:
    """An exception outside DRF's handling on an /api/ path (middleware process_exception), as JSON."""
    if isinstance(exc, (Http404, DjangoPermissionDenied, SuspiciousOperation, BadRequest)):
        status_code, code = _client_error(exc)
        return JsonResponse(error_body(code, _describe(exc)), status=status_code)
    request_id = current_request_id() or request.META.get("HTTP_X_REQUEST_ID")
    logger.error("unhandled exception on %s %s (request id %s)", request.method, request.path, request_id,
                 exc_info=exc)
    return JsonResponse(server_error_body(request_id), status=500)


def _client_error(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, Http404):
        return 404, "not_found"
    if isinstance(exc, DjangoPermissionDenied):
        return 403, "permission_denied"
    if isinstance(exc, RequestDataTooBig):
        return 413, "too_large"
    return 400, "invalid"


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: domain, DRF, Django and database errors, each to its status and one body shape,
    always rendered as JSON (also where the client asked for CSV or HTML: an error is not a document)."""
    _render_as_json(context.get("request"))
    if isinstance(exc, GovernanceError):
        return Response(error_body(exc.code, exc.message, field=exc.field,
                                   errors={exc.field: [exc.message]} if exc.field else None),
                        status=exc.http_status)
    if isinstance(exc, exceptions.ValidationError):
        return _field_errors(as_serializer_error(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        return _field_errors(as_serializer_error(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, IntegrityError):
        logger.info("integrity error turned into 409: %s", exc)
        return Response(error_body("conflict", "the request conflicts with data that already exists "
                                               "(a unique or integrity rule of the database refused it)"),
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DataError):  # a value the database refuses (e.g. PostgreSQL: NUL, out of range)
        logger.warning("database refused a value: %s", exc)
        return Response(error_body("invalid", "a value in the request cannot be stored or compared by the "
                                              "database (NUL character, or a number or date out of range)"),
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, OptimizerError):  # e.g. a spec or bundle the optimizer library refused
        return Response(error_body("invalid", str(exc)), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ImproperlyConfigured):  # e.g. no signing key: the server's fault, said plainly
        logger.error("server misconfiguration: %s", exc)
        return Response(error_body("unavailable", f"the server is not configured for this request: {exc}"),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, (SuspiciousOperation, BadRequest)):  # e.g. RequestDataTooBig from a multipart body
        status_code, code = _client_error(exc)
        return Response(error_body(code, _describe(exc)), status=status_code)
    if isinstance(exc, (Http404, DjangoPermissionDenied)):
        exc = exceptions.NotFound() if isinstance(exc, Http404) else exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = _api_exception_body(exc)
        return response
    return _unexpected(exc, context)


def _render_as_json(request: Any) -> None:
    if request is not None:
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type


def _unexpected(exc: Exception, context: dict[str, Any]) -> Response:
    """The server's fault: the traceback and request id go to the log, the client gets the request id."""
    request = context.get("request")
    request_id = current_request_id()
    logger.error("unhandled exception on %s %s (request id %s)", getattr(request, "method", "?"),
                 getattr(request, "path", "?"), request_id, exc_info=exc)
    return Response(server_error_body(request_id), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _field_errors(detail: Any, http_status: int) -> Response:
    errors = {str(key): [str(message) for message in _flatten(value)] for key, value in detail.items()} \
        if isinstance(detail, dict) else {NON_FIELD: [str(m) for m in _flatten(detail)]}
    errors = {key: messages for key, messages in errors.items() if messages} or {NON_FIELD: ["invalid input"]}
    field, messages = next(iter(errors.items()))
    first = messages[0]
    return Response(error_body("invalid", first if field == NON_FIELD else f"{field}: {first}",
                               field=None if field == NON_FIELD else field, errors=errors),
                    status=http_status)


def _flatten(value: Any) -> list[Any]:
    """Nested DRF error structures (lists of dicts for nested serializers) as a flat list of messages."""
    if isinstance(value, dict):
        return [f"{key}: {message}" for key, inner in value.items() for message in _flatten(inner)]
    if isinstance(value, (list, tuple)):
        return [message for item in value for message in _flatten(item)]
    return [value]


def _api_exception_body(exc: exceptions.APIException) -> dict[str, Any]:
    detail = exc.detail
    if isinstance(detail, dict) and "detail" in detail:
        detail = detail["detail"]
    if isinstance(detail, (list, dict)):
        messages = _flatten(detail)
        detail = messages[0] if messages else exc.default_detail
    code = getattr(detail, "code", None) or exc.default_code
    return error_body(str(code), str(detail))
