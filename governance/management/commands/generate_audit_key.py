"""Create the audit key every audit event is sealed with (hex, mode 0600), outside the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit import AuditKeyMissing, configured_audit_key, write_audit_key_file


class Command(BaseCommand):
    help = ("Generate the audit key at GOVERNANCE_AUDIT_KEY_PATH (or --path), readable by the owner only. Every "
            "audit event is sealed with it (HMAC-SHA256); keep a backup: seals verify only with it. To rotate, "
            "list the old file in GOVERNANCE_AUDIT_RETIRED_KEY_PATHS and write a new one at the key path.")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", help="where to write the key (default: settings.GOVERNANCE_AUDIT_KEY_PATH)")
        parser.add_argument("--if-missing", action="store_true",
                            help="succeed without writing when a key is already configured (setup scripts)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"] or settings.GOVERNANCE_AUDIT_KEY_PATH)
        if options["if_missing"] and not options["path"]:
            existing = configured_audit_key()
            if existing is not None:
                self.stdout.write(f"audit key: present (id {existing.key_id})")
                return
        try:
            key = write_audit_key_file(path)
        except FileExistsError:
            if options["if_missing"]:
                self.stdout.write(f"audit key: present at {path}")
                return
            raise CommandError(f"an audit key already exists at {path}; refusing to overwrite it (events sealed "
                               f"with it would no longer verify)") from None
        except (OSError, AuditKeyMissing) as exc:
            raise CommandError(f"audit key not written to {path}: {exc}") from exc
        if settings.GOVERNANCE_AUDIT_KEY:
            self.stderr.write("warning: GOVERNANCE_AUDIT_KEY is set and takes precedence over this file")
        self.stdout.write(f"wrote audit key to {path} (mode 600), id {key.key_id}; back it up outside the database")
