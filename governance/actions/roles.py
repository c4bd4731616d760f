"""Role groups and user creation: kept as an import path; the actions live in governance.actions.accounts."""

from governance.actions.accounts import create_user as create_user_with_roles
from governance.actions.accounts import setup_role_groups

__all__ = ["create_user_with_roles", "setup_role_groups"]
