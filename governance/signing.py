"""The export signing key (Ed25519): loaded from settings, never stored in the database.

GOVERNANCE_SIGNING_KEY_PEM (the PEM text, e.g. from a secret store) wins over the file at
GOVERNANCE_SIGNING_KEY_PATH. `python manage.py generate_signing_key` creates the file.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from optimizer import BundleError, key_fingerprint, load_private_key, public_key_b64, public_key_raw

logger = logging.getLogger(__name__)

GENERATE_HINT = "python manage.py generate_signing_key"


def signing_key_path() -> Path:
    return Path(settings.GOVERNANCE_SIGNING_KEY_PATH)


def signing_key() -> Ed25519PrivateKey:
    """The private key exports are signed with.

    Raises:
        ImproperlyConfigured: no key is configured, or the configured one is not an Ed25519 PEM key.
    """
    pem = getattr(settings, "GOVERNANCE_SIGNING_KEY_PEM", "")
    if pem:
        return _load(pem, "GOVERNANCE_SIGNING_KEY_PEM")
    path = signing_key_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImproperlyConfigured(
            f"no export signing key: {path} does not exist and GOVERNANCE_SIGNING_KEY_PEM is empty; "
            f"create one with `{GENERATE_HINT}`") from None
    except OSError as exc:
        raise ImproperlyConfigured(f"export signing key {path} cannot be read: {exc}") from exc
    _warn_if_readable_by_others(path)
    return _load(data, str(path))


def public_key() -> str:
    """The base64 raw public key verifiers pin (`verify_bundle --public-key ...`)."""
    return public_key_b64(signing_key())


def public_key_fingerprint() -> str:
    return key_fingerprint(public_key_raw(signing_key()))


def _load(pem: str | bytes, source: str) -> Ed25519PrivateKey:
    try:
        return load_private_key(pem)
    except BundleError as exc:
        raise ImproperlyConfigured(f"{source}: {exc} (create a new key with `{GENERATE_HINT}`)") from exc


def _warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("export signing key %s is accessible to group/others (mode %o); chmod 600 it",
                       path, stat.S_IMODE(mode))
