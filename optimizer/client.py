"""PromptClient: how a production service gets the approved prompt of a release label, and keeps running.

Pure Python (standard library HTTP; no Django), so a service needs only this package::

    client = PromptClient("https://governance.example", token, "support", "production",
                          trusted_public_key=ORG_PUBLIC_KEY)
    prediction = client.run({"ticket": "I was charged twice"})

Behaviour:

- The label's signed bundle is fetched from ``GET /api/v1/programs/<program>/releases/<label>/bundle`` with
  ``Authorization: Token <token>`` and verified (`optimizer.bundle.verify_bundle`) against the pinned
  `trusted_public_key`: its key fingerprint must be the pinned key's. A client without a pinned key is refused
  at construction unless `allow_any_signing_key=True` says otherwise (logged as a warning). An unverifiable
  bundle (altered, signed by another key, a JSON object with a duplicate key) is never used: the client keeps
  the last good one and logs an error.
- In memory for `ttl` seconds; after that the client revalidates with ``If-None-Match`` (a 304 keeps the bundle
  it has, a 200 replaces it).
- Every good bundle is also written to `cache_dir`. When the server cannot be reached (connection error,
  timeout, 5xx, 429), the client serves the bundle it has, or the one on disk (verified again: a file can be
  altered), and logs a warning. With neither, it raises `PromptClientError`.
- A 401, 403 or 404 is a configuration problem (token, membership, program or label), not an outage: it is
  raised, not hidden behind a stale bundle.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizer.bundle import VerifiedBundle, loads_bundle, require_pinned_key, verify_bundle
from optimizer.errors import BundleError, OptimizerError

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(os.environ.get("PROMPT_CLIENT_CACHE_DIR", Path.home() / ".cache" / "prompt-governance"))
USER_AGENT = "prompt-governance-client/1"


class PromptClientError(OptimizerError):
    """No verified bundle can be had (and none is cached), or the server refused the client's credentials."""


@dataclass(frozen=True)
class _Held:
    bundle: dict[str, Any]
    verified: VerifiedBundle
    etag: str
    checked_at: float  # clock() time of the last successful fetch or revalidation


class PromptClient:
    """Fetches, verifies and caches the bundle a release label serves; runs it with `optimizer.runtime`."""

    def __init__(self, base_url: str, token: str, program: str, label: str = "production", *,
                 trusted_public_key: bytes | str | None = None, allow_any_signing_key: bool = False,
                 ttl: float = 60.0, cache_dir: str | Path | None = None, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0:
            raise ValueError(f"`ttl >= 0` must hold, but got ({ttl=}).")
        if not program or not label:
            raise ValueError(f"program and label must be given, but got ({program=}, {label=}).")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.program = program
        self.label = label
        self.trusted_public_key = trusted_public_key
        self.allow_any_signing_key = allow_any_signing_key
        self.trusted_fingerprint = require_pinned_key(trusted_public_key, allow_any_signing_key=allow_any_signing_key,
                                                      who=f"PromptClient({program}@{label})", logger=logger)
        self.ttl = ttl
        self.timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
        self._clock = clock
        self._held: _Held | None = None
        self._lock = threading.RLock()
        self._runtime: Any = None
        self._runtime_hash: str | None = None
        self.last_source = ""  # "server", "not-modified", "memory", "memory-fallback" or "disk-fallback"

    # --- public API -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        quote = urllib.parse.quote
        return f"{self.base_url}/api/v1/programs/{quote(self.program, safe='')}/releases/" \
               f"{quote(self.label, safe='')}/bundle"

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / f"{self.program}@{self.label}.bundle.json"

    def bundle(self) -> VerifiedBundle:
        """The verified bundle to run now (fetched or revalidated when older than `ttl`)."""
        with self._lock:
            held = self._held
            if held is not None and self._clock() - held.checked_at < self.ttl:
                self.last_source = "memory"
                return held.verified
            return self._refresh().verified

    def refresh(self) -> VerifiedBundle:
        """Revalidate with the server now, whatever the TTL."""
        with self._lock:
            return self._refresh().verified

    def runtime(self, lm: Any = None, **lm_overrides: Any) -> Any:
        """An `optimizer.runtime.Runtime` of the current bundle (rebuilt when the bundle changes).

        Without `lm`, the LM the version was approved for is used, with `lm_overrides` (api_base, cache_path,
        ...) for deployment details.
        """
        from optimizer.runtime import Runtime  # the LM stack loads only when a service runs something

        verified = self.bundle()
        with self._lock:
            if lm is not None or lm_overrides or self._runtime is None or self._runtime_hash != verified.content_hash:
                runtime = Runtime.from_bundle(self._held.bundle, trusted_public_key=self.trusted_public_key,
                                              allow_any_signing_key=self.allow_any_signing_key, lm=lm, **lm_overrides)
                if lm is not None or lm_overrides:
                    return runtime
                self._runtime, self._runtime_hash = runtime, verified.content_hash
            return self._runtime

    def run(self, inputs: dict[str, Any]) -> Any:
        """Run the current approved prompt on one input (a Prediction)."""
        return self.runtime().run(inputs)

    # --- fetching -------------------------------------------------------------------------------------------

    def _refresh(self) -> _Held:
        disk = self._load_disk() if self._held is None else None  # a restarted service revalidates its file
        known = self._held or disk
        try:
            status, body, new_etag = self._get(known.etag if known is not None else None)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            return self._fallback(f"server unreachable ({getattr(exc, 'reason', exc)})", disk)
        if status == 304 and known is not None:
            self._held = _Held(known.bundle, known.verified, known.etag, self._clock())
            self.last_source = "not-modified"
            return self._held
        if status == 304:  # "unchanged" although we sent no ETag: ask again in full
            status, body, new_etag = self._get(None)
        if status in (401, 403, 404):
            raise PromptClientError(f"the server refused the bundle of {self.program}@{self.label} "
                                    f"(HTTP {status}): {body[:300].decode('utf-8', 'replace')}")
        if status != 200:
            return self._fallback(f"server answered HTTP {status}", disk)
        try:
            bundle = loads_bundle(body, source=f"the bundle from {self.url}")
            verified = self._verify(bundle)
        except BundleError as exc:
            logger.error("rejected the bundle of %s@%s from %s: %s", self.program, self.label, self.url, exc)
            return self._fallback(f"the server's bundle failed verification ({exc})", disk, verification_failed=True)
        self._held = _Held(bundle, verified, new_etag or "", self._clock())
        self._write_disk(self._held)
        self.last_source = "server"
        return self._held

    def _verify(self, bundle: dict[str, Any]) -> VerifiedBundle:
        verified = verify_bundle(bundle, trusted_public_key=self.trusted_public_key)
        if self.trusted_fingerprint is not None and verified.key_fingerprint != self.trusted_fingerprint:
            raise BundleError(f"bundle signed by key {verified.key_fingerprint}, not the pinned key "
                              f"{self.trusted_fingerprint}")
        return verified

    def _get(self, etag: str | None) -> tuple[int, bytes, str | None]:
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json", "User-Agent": USER_AGENT}
        if etag:
            headers["If-None-Match"] = etag
        request = urllib.request.Request(self.url, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read(), response.headers.get("ETag")
        except urllib.error.HTTPError as exc:  # 304 and every error status land here
            body = exc.read() if exc.fp is not None else b""
            return exc.code, body, exc.headers.get("ETag") if exc.headers else None

    def _fallback(self, why: str, disk: _Held | None, *, verification_failed: bool = False) -> _Held:
        held = self._held
        if held is not None:
            logger.warning("%s; keeping the bundle of %s@%s held in memory (version %s)", why, self.program,
                           self.label, held.verified.version_number)
            self.last_source = "memory-fallback"
            return held
        if disk is not None:
            logger.warning("%s; using the last good bundle of %s@%s from %s (version %s)", why, self.program,
                           self.label, self.cache_path, disk.verified.version_number)
            # Held, but not fresh: the next call tries the server again.
            self._held = _Held(disk.bundle, disk.verified, disk.etag, self._clock() - self.ttl)
            self.last_source = "disk-fallback"
            return self._held
        kind = "no verified bundle" if verification_failed else "no cached bundle"
        raise PromptClientError(f"{why}, and {kind} of {self.program}@{self.label} is available "
                                f"(looked in {self.cache_path})")

    # --- disk -------------------------------------------------------------------------------------------------

    def _load_disk(self) -> _Held | None:
        try:
            document = loads_bundle(self.cache_path.read_text(encoding="utf-8"), source=str(self.cache_path))
            bundle = document["bundle"]
            verified = self._verify(bundle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, BundleError) as exc:
            logger.error("ignoring the cached bundle %s: %s", self.cache_path, exc)
            return None
        if verified.program_slug != self.program:
            logger.error("ignoring the cached bundle %s: it is of program %s", self.cache_path, verified.program_slug)
            return None
        return _Held(bundle, verified, str(document.get("etag") or ""), float("-inf"))

    def _write_disk(self, held: _Held) -> None:
        """Atomically replace the cached file (a reader never sees half a bundle)."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".bundle-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"etag": held.etag, "program": self.program, "label": self.label, "bundle": held.bundle},
                          handle, sort_keys=True)
            os.replace(tmp, self.cache_path)
        except OSError as exc:
            logger.warning("could not write the bundle cache %s: %s", self.cache_path, exc)
