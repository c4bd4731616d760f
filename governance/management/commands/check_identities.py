"""`manage.py check_identities`: run the provider check once (what the beat job does every
GOVERNANCE_OIDC_CHECK_SECONDS), for deployments that schedule it with cron instead of Celery beat."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from governance.oidc import checks


class Command(BaseCommand):
    help = "Refresh every SSO user's grant at the identity provider; deactivate those it refuses."

    def handle(self, *args: Any, **options: Any) -> None:
        report = checks.check_identities()
        self.stdout.write(f"checked {report.checked}, refused (deactivated) {report.refused}, "
                          f"unreachable {report.unreachable}")
