"""Template filters for the authoring buttons: the actions' own checks, asked without raising."""

from __future__ import annotations

from typing import Any

from django import template

from governance import playground
from governance.actions import versions as version_actions
from governance.errors import GovernanceError
from governance.models import PromptVersion

register = template.Library()


@register.filter
def can_edit_version(version: PromptVersion, user: Any) -> bool:
    """`{% if version|can_edit_version:user %}`: the draft editor's own check (author of a draft)."""
    return version_actions.can_edit(version, user)


@register.filter
def can_try_version(version: PromptVersion, user: Any) -> bool:
    """`{% if version|can_try_version:user %}`: the playground's own check (authors and reviewers)."""
    try:
        playground.check_try(version, user)
    except GovernanceError:
        return False
    return True
