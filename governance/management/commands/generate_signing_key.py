"""Create the Ed25519 key export bundles are signed with (PEM, mode 0600), and print its public key."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from optimizer import (
    BundleError,
    generate_private_key,
    key_fingerprint,
    load_private_key,
    private_key_pem,
    public_key_b64,
    public_key_raw,
)


class Command(BaseCommand):
    help = ("Generate the Ed25519 export signing key at GOVERNANCE_SIGNING_KEY_PATH (or --path), readable by the "
            "owner only, and print the public key that verifiers pin (verify_bundle --public-key).")
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--path", help="where to write the PEM (default: settings.GOVERNANCE_SIGNING_KEY_PATH)")
        parser.add_argument("--force", action="store_true",
                            help="replace an existing key (bundles signed with it then verify only against the "
                                 "old public key)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"] or settings.GOVERNANCE_SIGNING_KEY_PATH)
        if path.exists() and not options["force"]:
            raise CommandError(f"a signing key already exists at {path}{_existing_public_key(path)}; "
                               "refusing to overwrite it (pass --force to replace it)")
        key = generate_private_key()
        try:
            _write_private(path, private_key_pem(key), replace=options["force"])
        except FileExistsError:
            raise CommandError(f"a signing key appeared at {path} meanwhile; refusing to overwrite it") from None
        if getattr(settings, "GOVERNANCE_SIGNING_KEY_PEM", ""):
            self.stderr.write("warning: GOVERNANCE_SIGNING_KEY_PEM is set and takes precedence over this file")
        self.stdout.write(f"wrote Ed25519 signing key to {path} (mode 600)")
        self.stdout.write(f"public key: {public_key_b64(key)}")
        self.stdout.write(f"fingerprint: {key_fingerprint(public_key_raw(key))}")


def _existing_public_key(path: Path) -> str:
    try:
        return f" (public key {public_key_b64(load_private_key(path.read_bytes()))})"
    except (OSError, BundleError):
        return ""


def _write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write with mode 0600 from the first byte. Without `replace`, O_EXCL makes creation atomic (it fails if
    a key exists); with it, a temporary file in the same folder is renamed over the old key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        _write_fd(fd, data)
        return
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-", suffix=".tmp")  # mode 0600
    try:
        _write_fd(fd, data)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _write_fd(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
