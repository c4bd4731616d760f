"""Single sign-on through an OpenID Connect provider (entry points): mozilla-django-oidc's login flow with the
endpoints from the issuer's discovery document (`backend`, `views`), signatures re-authenticated at the provider
(`signing`), and the scheduled check that learns when the provider disabled someone (`checks`).

Off unless GOVERNANCE_OIDC_ISSUER and GOVERNANCE_OIDC_CLIENT_ID are set (`provider.enabled`). The decisions
(users from claims, group roles, deactivation, what a signature needs) are governance.actions.identities'.
"""
