"""Signed export bundles: the file format production services load, and its verification.

Pure Python (no Django), so a service or the optimizer runtime can verify a bundle with the public key alone.

A bundle is one JSON document::

    {"format": "prompt-governance-bundle/1",
     "manifest": {...},            # what was approved, by whom, released where, optimized how
     "payload": {...},             # the frozen PromptVersion payload: {"program": ..., "lm": ...}
     "dspy_state": {...},          # the same program as a state `dspy` loads (optimizer.dspy_compat)
     "signature": {"algorithm": "ed25519",
                   "public_key": "<base64 of the raw 32-byte public key>",
                   "key_fingerprint": "<sha256 hex of the raw public key>",
                   "value": "<base64 Ed25519 signature over canonical_json(manifest)>"}}

Only the manifest is signed; it carries the SHA-256 of the payload (`content_hash`, the value the reviewers'
approvals are bound to, and `payload_sha256`) and of the DSPy state (`dspy_state_sha256`), so the signature
covers all three documents. Hashes and the signed bytes use `optimizer.program.canonical_json`.

Trust: a bundle carries its own public key, so `verify_bundle` without `trusted_public_key` proves only that
the bundle is intact and self-consistent. Pin the organisation's key (``trusted_public_key=...``) to prove
who signed it; anyone can sign a forged bundle with a key of their own. The client and the runtime refuse to
work without a pinned key unless told so explicitly (`allow_any_signing_key=True`, logged).

Parsing: a JSON object with the same key twice anywhere in a bundle is refused (`loads_bundle`). Parsers
disagree on which duplicate wins (Python keeps the last), so a bundle whose signed manifest was checked with
one value could be run with another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from optimizer.errors import BundleError
from optimizer.program import canonical_json, content_hash

FORMAT = "prompt-governance-bundle/1"
ALGORITHM = "ed25519"
BUNDLE_KEYS = ("format", "manifest", "payload", "dspy_state", "signature")
SIGNATURE_KEYS = ("algorithm", "public_key", "key_fingerprint", "value")
MANIFEST_KEYS = ("program", "version", "content_hash", "payload_sha256", "dspy_state_sha256", "approvals",
                 "release", "provenance", "exported_at", "exported_by")
APPROVAL_KEYS = ("name", "signed_at", "meaning", "content_hash")
_RAW_PUBLIC_KEY_BYTES = 32
_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature and hashes checked out. `key_fingerprint` names the key that signed it."""

    manifest: dict[str, Any]
    payload: dict[str, Any]
    dspy_state: dict[str, Any]
    key_fingerprint: str

    @property
    def program_slug(self) -> str:
        return str(self.manifest["program"].get("slug", ""))

    @property
    def version_number(self) -> int:
        return int(self.manifest["version"]["number"])

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])

    @property
    def approvals(self) -> list[dict[str, Any]]:
        return list(self.manifest["approvals"])

    def summary(self) -> str:
        """One line for logs and the `verify_bundle` command: what, which content, which key, who approved."""
        approvals = ", ".join(f"{a['name']} ({a['signed_at']}, {a['meaning']})" for a in self.approvals) or "none"
        release = self.manifest.get("release") or {}
        label = f", release {release['label']}" if release.get("label") else ""
        return (f"OK: {self.program_slug} v{self.version_number} hash {self.content_hash}{label} "
                f"signed by key {self.key_fingerprint}, approvals: {approvals}")


# ---------------------------------------------------------------------------------------------- keys


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def load_private_key(pem: bytes | str) -> Ed25519PrivateKey:
    """An Ed25519 private key from unencrypted PKCS#8 PEM (what `private_key_pem` writes)."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"signing key is not a readable unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"signing key must be an Ed25519 key, got {type(key).__name__}")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The base64 of the raw 32-byte public key: what bundles carry and what verifiers pin."""
    return base64.b64encode(public_key_raw(key)).decode("ascii")


def key_fingerprint(raw_public_key: bytes) -> str:
    return hashlib.sha256(raw_public_key).hexdigest()


def require_pinned_key(trusted_public_key: bytes | str | Ed25519PublicKey | None, *, allow_any_signing_key: bool,
                       who: str, logger: Any) -> str | None:
    """The fingerprint of the pinned key, checked once where a client or runtime is built.

    Without a pinned key a forged bundle signed by anyone's key would verify, so None is refused unless the
    caller opts out explicitly (`allow_any_signing_key=True`), which is logged as a warning.

    Raises:
        BundleError: no key and no opt-out, or a key that cannot be read.
    """
    if trusted_public_key is not None:
        return key_fingerprint(parse_public_key(trusted_public_key))
    if not allow_any_signing_key:
        raise BundleError(f"{who} needs trusted_public_key (the organisation's signing key, base64 or PEM); pass "
                          "allow_any_signing_key=True to accept bundles signed by any key (not for production)")
    logger.warning("%s accepts bundles signed by ANY key (allow_any_signing_key=True): a forged bundle would "
                   "verify; pin trusted_public_key in production", who)
    return None


def parse_public_key(value: bytes | str | Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of a public key given as raw bytes, base64 of them, or a PEM public key."""
    if isinstance(value, Ed25519PublicKey):
        return public_key_raw(value)
    if isinstance(value, bytes) and len(value) == _RAW_PUBLIC_KEY_BYTES:
        return value
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else value
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, TypeError) as exc:
            raise BundleError(f"trusted public key is not a readable PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError(f"trusted public key must be an Ed25519 key, got {type(key).__name__}")
        return public_key_raw(key)
    return _b64decode(text, what="public key", length=_RAW_PUBLIC_KEY_BYTES)


# ---------------------------------------------------------------------------------------------- signing


def sign_bundle(manifest: dict[str, Any], payload: dict[str, Any], dspy_state: dict[str, Any],
                private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Assemble and sign a bundle.

    `payload_sha256` and `dspy_state_sha256` are filled in here; `manifest["content_hash"]` must already be
    the hash the reviewers approved, and must equal the payload's hash (a bundle never ships content other
    than what was approved). All three documents are normalized through JSON first, so the signature still
    verifies after the bundle is written to a file and read back.

    Raises:
        BundleError: the manifest lacks a required key, or its content hash does not match the payload.
    """
    manifest, payload, dspy_state = (_json_normalized(manifest, "manifest"), _json_normalized(payload, "payload"),
                                     _json_normalized(dspy_state, "dspy_state"))
    manifest["payload_sha256"] = content_hash(payload)
    manifest["dspy_state_sha256"] = content_hash(dspy_state)
    _check_manifest_shape(manifest)
    _check_hashes(manifest, payload, dspy_state)
    raw_public = public_key_raw(private_key)
    signature = private_key.sign(canonical_json(manifest).encode("utf-8"))
    return {
        "format": FORMAT,
        "manifest": manifest,
        "payload": payload,
        "dspy_state": dspy_state,
        "signature": {"algorithm": ALGORITHM, "public_key": base64.b64encode(raw_public).decode("ascii"),
                      "key_fingerprint": key_fingerprint(raw_public),
                      "value": base64.b64encode(signature).decode("ascii")},
    }


# ---------------------------------------------------------------------------------------------- verifying


def verify_bundle(bundle: dict[str, Any], *,
                  trusted_public_key: bytes | str | Ed25519PublicKey | None = None) -> VerifiedBundle:
    """Check a bundle's structure, key, signature and hashes; return its verified parts.

    Order: shape, key fingerprint, trusted key (when given), signature over the manifest, then the payload,
    DSPy state and approval hashes against the (now authenticated) manifest.

    Raises:
        BundleError: with the first problem found, e.g. "signature does not match manifest (bundle altered?)"
            or "payload hash mismatch: manifest says X, payload hashes to Y".
    """
    _check_bundle_shape(bundle)
    block = bundle["signature"]
    raw_public = _b64decode(block["public_key"], what="signature public_key", length=_RAW_PUBLIC_KEY_BYTES)
    fingerprint = key_fingerprint(raw_public)
    if block["key_fingerprint"] != fingerprint:
        raise BundleError(f"key fingerprint {block['key_fingerprint']} does not match the bundle's public key "
                          f"(which has fingerprint {fingerprint})")
    if trusted_public_key is not None:
        trusted = key_fingerprint(parse_public_key(trusted_public_key))
        if trusted != fingerprint:
            raise BundleError(f"untrusted key fingerprint {fingerprint}: the bundle was not signed by the "
                              f"trusted key (fingerprint {trusted})")
    signature = _b64decode(block["value"], what="signature value", length=_SIGNATURE_BYTES)
    manifest = bundle["manifest"]
    try:
        Ed25519PublicKey.from_public_bytes(raw_public).verify(signature, canonical_json(manifest).encode("utf-8"))
    except InvalidSignature:
        raise BundleError("signature does not match manifest (bundle altered?)") from None
    _check_manifest_shape(manifest)
    _check_hashes(manifest, bundle["payload"], bundle["dspy_state"])
    return VerifiedBundle(manifest=manifest, payload=bundle["payload"], dspy_state=bundle["dspy_state"],
                          key_fingerprint=fingerprint)


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Read a bundle file (not verified: pass the result to `verify_bundle`)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"bundle file {str(source)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle file {str(source)!r} cannot be read: {exc}") from exc
    return loads_bundle(text, source=str(source))


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: an object, or an error naming the first key that appears twice."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def loads_bundle(text: str | bytes, *, source: str = "bundle") -> dict[str, Any]:
    """Parse a bundle document (not verified: pass the result to `verify_bundle`); refuses duplicate keys."""
    try:
        bundle = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise BundleError(f"{source} has the key {str(exc)!r} twice in one object (a duplicate key could make "
                          "what is verified differ from what is used)") from None
    except RecursionError:
        raise BundleError(f"{source} is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(bundle, dict):
        raise BundleError(f"{source} must be a JSON object, got {type(bundle).__name__}")
    return bundle


def dumps_bundle(bundle: dict[str, Any]) -> str:
    """The file form: indented for people; verification does not depend on the formatting."""
    return json.dumps(bundle, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_bundle(bundle: dict[str, Any], path: str | Path) -> Path:
    target = Path(path)
    target.write_text(dumps_bundle(bundle), encoding="utf-8")
    return target


# ---------------------------------------------------------------------------------------------- checks


def _check_bundle_shape(bundle: Any) -> None:
    if not isinstance(bundle, dict):
        raise BundleError(f"a bundle must be a JSON object, got {type(bundle).__name__}")
    missing = [key for key in BUNDLE_KEYS if key not in bundle]
    if missing:
        raise BundleError(f"bundle is missing {', '.join(missing)}")
    if bundle["format"] != FORMAT:
        raise BundleError(f"unsupported bundle format {bundle['format']!r}; expected {FORMAT!r}")
    for key in ("manifest", "payload", "dspy_state", "signature"):
        if not isinstance(bundle[key], dict):
            raise BundleError(f"bundle {key} must be a JSON object, got {type(bundle[key]).__name__}")
    block = bundle["signature"]
    missing = [key for key in SIGNATURE_KEYS if not isinstance(block.get(key), str)]
    if missing:
        raise BundleError(f"bundle signature is missing {', '.join(missing)}")
    if block["algorithm"] != ALGORITHM:
        raise BundleError(f"unsupported signature algorithm {block['algorithm']!r}; expected {ALGORITHM!r}")


def _check_manifest_shape(manifest: dict[str, Any]) -> None:
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"manifest is missing {', '.join(missing)}")
    if not isinstance(manifest["program"], dict) or not manifest["program"].get("slug"):
        raise BundleError("manifest program must be an object with a slug")
    version = manifest["version"]
    if not isinstance(version, dict) or not isinstance(version.get("number"), int):
        raise BundleError("manifest version must be an object with an integer number")
    if not isinstance(manifest["approvals"], list):
        raise BundleError("manifest approvals must be a list")
    for index, approval in enumerate(manifest["approvals"]):
        if not isinstance(approval, dict) or any(key not in approval for key in APPROVAL_KEYS):
            raise BundleError(f"manifest approval {index} must be an object with {', '.join(APPROVAL_KEYS)}")


def _check_hashes(manifest: dict[str, Any], payload: Any, dspy_state: Any) -> None:
    actual = content_hash(payload)
    for key in ("content_hash", "payload_sha256"):
        if manifest[key] != actual:
            raise BundleError(f"payload hash mismatch: manifest says {manifest[key]}, payload hashes to {actual}")
    actual_state = content_hash(dspy_state)
    if manifest["dspy_state_sha256"] != actual_state:
        raise BundleError(f"dspy_state hash mismatch: manifest says {manifest['dspy_state_sha256']}, "
                          f"dspy_state hashes to {actual_state}")
    for approval in manifest["approvals"]:
        if approval["content_hash"] != actual:
            raise BundleError(f"approval by {approval['name']} is bound to content {approval['content_hash']}, "
                              f"not to this payload ({actual})")


def _json_normalized(value: Any, what: str) -> dict[str, Any]:
    """A deep copy as JSON would give it back (string keys, lists for tuples), so hashes survive a file."""
    if not isinstance(value, dict):
        raise BundleError(f"bundle {what} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(canonical_json(value))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle {what} is not JSON-serializable: {exc}") from exc


def _b64decode(value: Any, *, what: str, length: int) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{what} is not valid base64") from None
    if len(raw) != length:
        raise BundleError(f"{what} must decode to {length} bytes, got {len(raw)}")
    return raw
