"""What a user may do to a governed object now: the actions' own check functions, asked without raising.

`allowed_actions(obj, user)` is the one source of the portal's buttons and forms; `refusal(obj, user, action)`
is the domain error the action itself would raise (403 for permission, 409 for the workflow), which the portal
and the API answer with when a forced request asks for an action that is not allowed. Each action module keeps
its table of checks next to the action (reviews.REVIEW_CHECKS, versions.VERSION_CHECKS, ...); this module only
gathers them per kind of object.
"""

from __future__ import annotations

from typing import Any

from governance.actions import dspy_files as dspy_actions
from governance.actions import exports as export_actions
from governance.actions import releases as release_actions
from governance.actions import reviews as review_actions
from governance.actions import runs as run_actions
from governance.actions import versions as version_actions
from governance.actions._common import Checks, allowed, refusal_of
from governance.errors import GovernanceError
from governance.models import ChangeRequest, OptimizationRun, Program, PromptVersion, ReleaseLabel

CHECKS: dict[type, Checks] = {
    ChangeRequest: {**review_actions.REVIEW_CHECKS, **review_actions.REEVALUATE_CHECKS},
    PromptVersion: {**version_actions.VERSION_CHECKS, **review_actions.SUBMIT_CHECKS,
                    **release_actions.VERSION_RELEASE_CHECKS, **export_actions.EXPORT_CHECKS},
    OptimizationRun: run_actions.RUN_CHECKS,
    ReleaseLabel: release_actions.LABEL_CHECKS,
    Program: {**run_actions.PROGRAM_RUN_CHECKS, **release_actions.PROGRAM_RELEASE_CHECKS,
              **dspy_actions.PROGRAM_DSPY_CHECKS},
}


def checks_for(obj: Any) -> Checks:
    try:
        return CHECKS[type(obj)]
    except KeyError:
        raise LookupError(f"{type(obj).__name__} has no actions") from None


def allowed_actions(obj: Any, user: Any) -> set[str]:
    """The names of the actions `user` may take on `obj` now (an anonymous user: none)."""
    return allowed(checks_for(obj), obj, user)


def refusal(obj: Any, user: Any, action: str) -> GovernanceError | None:
    """Why `user` may not take `action` on `obj` (the error the action raises), or None when they may."""
    return refusal_of(checks_for(obj), obj, user, action)
