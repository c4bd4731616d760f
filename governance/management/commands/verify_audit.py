"""Verify the audit trail against its signed checkpoints, its hash chain and its seals."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit import TrailReport, verify_trail
from governance.models import AuditEvent

# Exit codes: the kind of the first problem reported.
EXIT_CODES = {"broken": 1, "rewritten": 1, "truncated": 3, "forged_checkpoint": 4}
EXIT_CANNOT_VERIFY = 5


class Command(BaseCommand):
    help = ("Verify the audit trail. The latest checkpoint in the anchor file and in the database must verify "
            "(signature) and still match the events (count and head hash: catches truncation and a recomputed "
            "chain); then every event from the last good checkpoint on must link to the one before, match its hash "
            "and carry a valid seal (catches altered, inserted and forged events). --full walks from the first "
            "event. Exit codes: 0 intact, 1 an event altered/inserted/forged or the chain rewritten, 3 truncated, "
            "4 a checkpoint forged or tampered with, 5 cannot verify (keys missing). Messages name the first bad "
            "event.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true",
                            help="walk every event from the first, not only those after the last good checkpoint")
        parser.add_argument("--public-key", action="append", default=[], dest="public_keys",
                            help="also trust checkpoints signed with this Ed25519 public key (base64 or PEM; e.g. "
                                 "a retired signing key); repeatable")
        parser.add_argument("--expect-head", help="a head hash printed by an earlier run; it must still be present")

    def handle(self, *args: Any, **options: Any) -> None:
        progress = (lambda walked: self.stderr.write(f"verified {walked} events...")) if options["full"] else None
        try:
            report = verify_trail(full=options["full"], public_keys=options["public_keys"], progress=progress)
        except ImproperlyConfigured as exc:
            raise CommandError(f"cannot verify the audit trail: {exc}", returncode=EXIT_CANNOT_VERIFY) from exc
        if report.problems:
            raise CommandError("\n".join(problem.message for problem in report.problems),
                               returncode=EXIT_CODES[report.problems[0].kind])
        expected = options["expect_head"]
        if expected and not AuditEvent.objects.filter(hash=expected).exists():
            raise CommandError(f"audit chain truncated: the recorded head {expected} is no longer in the chain "
                               f"(current head {report.head or 'none'})", returncode=EXIT_CODES["truncated"])
        self._report(report)

    def _report(self, report: TrailReport) -> None:
        self.stdout.write(f"audit chain intact: {report.event_count} events")
        if report.head:
            self.stdout.write(f"head: {report.head}")
        if report.checkpoint is not None:
            self.stdout.write(f"checkpoint: {report.checkpoint.describe()}, signature valid and matching; "
                              f"{report.walked} events walked")
        elif report.event_count:
            self.stderr.write("warning: no audit checkpoint yet, so neither removal of the newest events nor a chain "
                              "rewritten with its seals stripped can be detected; write one with "
                              "`python manage.py audit_checkpoint`")
