"""Write the audit trail (or one program's part of it, for a date range) as a human-readable CSV."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.models import Program
from governance.reports import audit_events, write_audit_csv


class Command(BaseCommand):
    help = ("Audit trail as CSV (UTC times, printed names, reasons, before/after, hashes). Dates are UTC days, "
            "both inclusive.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--program", help="program slug")
        parser.add_argument("--since", help="first day, YYYY-MM-DD")
        parser.add_argument("--until", help="last day, YYYY-MM-DD")
        parser.add_argument("--out", help="CSV file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        program = None
        if options["program"]:
            program = Program.objects.filter(slug=options["program"]).first()
            if program is None:
                raise CommandError(f"no program with slug {options['program']!r}")
        since, until = _day(options["since"], "--since"), _day(options["until"], "--until")
        if since and until and since > until:
            raise CommandError(f"--since {since} is after --until {until}")
        events = audit_events(program=program, since=since, until=until)
        if options["out"]:
            try:
                with open(options["out"], "w", encoding="utf-8", newline="") as handle:
                    count = write_audit_csv(events, handle)
            except OSError as exc:
                raise CommandError(f"cannot write {options['out']}: {exc}") from exc
            self.stdout.write(f"wrote {count} audit events to {options['out']}")
        else:
            count = write_audit_csv(events, _Stdout(self))
            self.stderr.write(f"{count} audit events")


def _day(value: str | date | None, option: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} expects a date as YYYY-MM-DD, got {value!r}") from None


class _Stdout:
    """A file-like view of the command's stdout that adds no line endings of its own (csv writes them)."""

    def __init__(self, command: BaseCommand) -> None:
        self._command = command

    def write(self, text: str) -> int:
        self._command.stdout.write(text, ending="")
        return len(text)
