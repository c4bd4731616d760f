"""A real OpenID Connect provider for the tests: a small Django project on django-oauth-toolkit's OIDC provider,
run as a separate server process on a local port (`python -m tests.oidc_provider.serve`; the harness in
`tests/oidc_provider/harness.py` starts it and drives its login page). Never imported by the product."""
