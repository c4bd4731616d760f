"""The provider check (scheduled, `governance.tasks.check_identities` every GOVERNANCE_OIDC_CHECK_SECONDS):
for each active SSO user, refresh their grant at the provider. invalid_grant means the provider disabled the
person or revoked the grant: governance.actions.identities.provider_refused deactivates the account, revokes its
API keys and ends its sessions (audited). So a person disabled at the provider keeps access here for at most
one check interval plus the run's duration; a provider that does not answer decides nothing (logged, shown)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from governance.actions import identities
from governance.models import Identity
from governance.oidc import provider

log = logging.getLogger(__name__)


@dataclass
class CheckReport:
    checked: int = 0
    refused: int = 0
    unreachable: int = 0


def check_identities() -> CheckReport:
    report = CheckReport()
    if not provider.enabled():
        return report
    for identity in Identity.objects.filter(user__is_active=True).select_related("user").order_by("pk"):
        report.checked += 1
        outcome = check_identity(identity)
        report.refused += outcome == "refused"
        report.unreachable += outcome == "unreachable"
    return report


def check_identity(identity: Identity) -> str:
    """"answered", "refused" (the account is now deactivated) or "unreachable"."""
    refresh_token = identities.open_token(identity.refresh_token)
    if not refresh_token:
        identities.provider_unreachable(identity, error="no refresh token stored (the provider gave none at the "
                                                        "last login: ask for the offline_access scope)")
        return "unreachable"
    try:
        answer = provider.token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})
    except provider.OAuthError as exc:
        if exc.error == "invalid_grant":
            identities.provider_refused(identity, detail=str(exc))
            log.warning("identity provider refused %s: deactivated", identity)
            return "refused"
        identities.provider_unreachable(identity, error=str(exc))
        return "unreachable"
    except provider.ProviderError as exc:
        identities.provider_unreachable(identity, error=str(exc))
        log.warning("identity provider check of %s got no answer: %s", identity, exc)
        return "unreachable"
    identities.provider_answered(identity, refresh_token=answer.get("refresh_token", ""))
    return "answered"
