"""Claims of the test provider, and the refusal real providers make for a disabled account."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    oidc_claim_scope = None  # every claim below goes in the ID token whatever the scopes (groups included)

    def get_additional_claims(self, request):
        user = request.user
        return {"preferred_username": user.username, "email": user.email, "given_name": user.first_name,
                "family_name": user.last_name, "name": user.get_full_name(),
                "groups": sorted(user.groups.values_list("name", flat=True))}

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        """Keycloak ("Account disabled") and Entra ID (AADSTS50057) answer invalid_grant to a refresh token of
        a disabled user; django-oauth-toolkit does not look at the user, so this provider does it here."""
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        return valid and request.user.is_active
