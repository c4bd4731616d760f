"""OpenAPI generation: every operation documents the error responses the exception handler can produce."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API (see governance.api.errors)."""

    code = serializers.CharField(help_text="invalid, permission_denied, not_found, illegal_transition, ...")
    detail = serializers.CharField(help_text="What is wrong, in words.")
    field = serializers.CharField(required=False, help_text="The input field the error is about.")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="Every field error: field -> messages.")


# Which statuses each kind of operation can answer with besides its success (and the handler's 503 when the
# server lacks its signing key, which only exports can meet).
_READ_ERRORS = ("400", "403", "404")
_WRITE_ERRORS = ("400", "403", "404", "409")


class GovernanceAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = _READ_ERRORS if self.method in ("GET", "HEAD") else _WRITE_ERRORS
        for code in (*codes, *getattr(self.view, "extra_error_codes", ())):
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
        return responses
