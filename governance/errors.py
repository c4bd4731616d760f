"""Domain errors: one hierarchy with a code and an HTTP status, rendered once by the API and the portal."""

from __future__ import annotations


class GovernanceError(Exception):
    """Base of every error an action raises on purpose."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, str]:
        data = {"code": self.code, "detail": self.message}
        if self.field:
            data["field"] = self.field
        return data


class InvalidInput(GovernanceError):
    """Bad input: the field and the reason are in the message (HTTP 400)."""

    code = "invalid"
    http_status = 400


class PermissionDenied(GovernanceError):
    """The actor lacks the role or the right on this object (HTTP 403)."""

    code = "permission_denied"
    http_status = 403


class NotFound(GovernanceError):
    code = "not_found"
    http_status = 404


class IllegalTransition(GovernanceError):
    """The workflow does not allow this step from the object's current state (HTTP 409)."""

    code = "illegal_transition"
    http_status = 409


class SegregationOfDuties(PermissionDenied):
    """Author, run starter, approver and releaser must be different people."""

    code = "segregation_of_duties"


class AuthenticationFailed(PermissionDenied):
    """Re-authentication at signing failed (wrong password)."""

    code = "reauthentication_failed"


class FrozenVersionError(IllegalTransition):
    """An approved (frozen) version's content cannot change; create a new version instead."""

    code = "frozen"
