"""API tokens: kept as an import path; the actions live in governance.actions.accounts."""

from governance.actions.accounts import revoke_tokens, rotate_token

__all__ = ["rotate_token", "revoke_tokens"]
