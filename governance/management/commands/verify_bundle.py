"""Verify a signed export bundle offline: signature, hashes, approvals. Never touches the database."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from optimizer import BundleError, load_bundle, verify_bundle


class Command(BaseCommand):
    help = ("Verify an export bundle file with the public key alone (no database). Pin the organisation's key "
            "with --public-key; without it only the bundle's integrity and self-consistency are proven.")
    requires_system_checks: list[str] = []  # offline: no checks that could reach the database
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--public-key", help="trusted public key: base64 of the raw 32 bytes, or PEM")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            verified = verify_bundle(load_bundle(options["file"]), trusted_public_key=options["public_key"])
        except BundleError as exc:
            raise CommandError(f"{options['file']}: verification failed: {exc}") from exc
        self.stdout.write(verified.summary())
        if not options["public_key"]:
            self.stderr.write("note: no --public-key given: the bundle is intact and self-consistent, but the "
                              f"signing key {verified.key_fingerprint} is not checked against a trusted key")
