"""Writing and verifying the hash-chained, sealed audit trail, and its signed checkpoints.

Each event's hash covers the previous event's hash and the event's own content, so altering, inserting or
removing any row breaks every later link. Writers serialize on the chain head: a PostgreSQL advisory lock
(held to the end of the transaction), and SQLite's single writer lock.

A hash chain alone stops nobody who can write to the database: they can recompute every hash. So:

- every event also carries a **seal**, HMAC-SHA256(audit key, hash). The audit key lives outside the database
  (GOVERNANCE_AUDIT_KEY, else the file at GOVERNANCE_AUDIT_KEY_PATH; `manage.py generate_audit_key`), so a
  rewritten or forged event cannot carry a valid seal. Events written before seals existed have none; the
  first sealed event's hash covers all of them, so they stay protected through it.
- **checkpoints** are Ed25519-signed statements (event count, last event id, head hash, time) made with the
  export signing key (governance.signing), stored in AuditCheckpoint and appended as a JSON line to the anchor
  file (GOVERNANCE_AUDIT_ANCHOR_PATH), optionally POSTed to GOVERNANCE_AUDIT_ANCHOR_URL. They are written on
  demand (`manage.py audit_checkpoint`), on a schedule (Celery beat) and after commit once
  GOVERNANCE_AUDIT_CHECKPOINT_EVERY events have accumulated. A truncated or shortened chain no longer reaches
  a checkpoint's count, a recomputed one no longer has its head hash.

`verify_trail` checks the latest checkpoints against the database and walks (links, hashes, seals) from the
last good checkpoint forward; `full=True` walks from the first event. `checkpoint_status` is the cheap
summary pages show: it never walks the chain.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from governance.errors import GovernanceError
from governance.models import GENESIS_HASH, AuditCheckpoint, AuditEvent, Program
from governance.request_context import current_request_context
from governance.signing import signing_key
from optimizer import BundleError, canonical_json, key_fingerprint, parse_public_key, public_key_raw

logger = logging.getLogger(__name__)

_CHAIN_LOCK_ID = 4242_0001  # arbitrary constant naming the advisory lock that guards the chain head
_CHECKPOINT_LOCK_ID = 4242_0002  # serializes checkpoint writers (never held by record_event)
AUDIT_KEY_HINT = "python manage.py generate_audit_key"
CHECKPOINT_STATEMENT = "prompt-governance audit checkpoint v1"
_AUDIT_KEY_BYTES = 32


# --- events ------------------------------------------------------------------------------------------------


def printed_name(user: Any) -> str:
    """The name a signature or audit row shows: full name, else username."""
    if user is None:
        return "system"
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def event_content(event: AuditEvent) -> dict[str, Any]:
    """The fields the hash covers, in a form that survives a database round trip unchanged."""
    return {
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": str(event.object_id),
        "program_id": event.program_id,
        "before": event.before,
        "after": event.after,
        "reason": event.reason,
        "ip_address": event.ip_address,
        "request_id": event.request_id,
    }


def compute_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode("utf-8")).hexdigest()


def _lock(lock_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def record_event(action: str, *, actor: Any, obj: Any = None, program: Program | None = None,
                 before: Any = None, after: Any = None, reason: str = "",
                 object_type: str | None = None, object_id: Any = None) -> AuditEvent:
    """Append one sealed event to the chain. Must run inside the caller's transaction (actions are atomic).

    Raises:
        AuditKeyMissing: no audit key is configured (HTTP 503 in the API and the portal).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must run inside transaction.atomic (call it from an action)")
    key = audit_key()  # before taking the lock: a missing key fails fast and holds nothing up
    _lock(_CHAIN_LOCK_ID)
    context = current_request_context()
    previous = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS_HASH
    event = AuditEvent(
        created_at=timezone.now(),
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=printed_name(actor),
        action=action,
        object_type=object_type or (type(obj).__name__ if obj is not None else "system"),
        object_id=str(object_id if object_id is not None else getattr(obj, "pk", "") or ""),
        program=program,
        before=before,
        after=after,
        reason=reason or "",
        ip_address=context["ip"],
        request_id=context["request_id"] or "",
        prev_hash=previous,
    )
    event.hash = compute_hash(previous, event_content(event))
    event.seal, event.seal_key_id = seal(key, event.hash), key.key_id
    event.save(force_insert=True)
    if settings.GOVERNANCE_AUDIT_CHECKPOINT_EVERY > 0 and not _checkpoint_queued():
        # Once per transaction, whatever number of events it writes. robust: whatever goes wrong there is logged;
        # the change itself has committed by then.
        transaction.on_commit(_checkpoint_after_commit, robust=True)
    return event


def _checkpoint_queued() -> bool:
    """Already queued in this (save)point of the transaction: one check per block, not one per event."""
    current = set(connection.savepoint_ids)
    return any(callback is _checkpoint_after_commit and sids == current
               for sids, callback, *_ in connection.run_on_commit)


def _checkpoint_after_commit() -> AuditCheckpoint | None:
    latest = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return checkpoint_if_due(latest) if latest is not None else None


# --- the audit key (HMAC seals) ------------------------------------------------------------------------------


class AuditKeyMissing(GovernanceError, ImproperlyConfigured):
    """No usable audit key: audited writes are refused rather than written unsealed."""

    code = "audit_key_missing"
    http_status = 503


@dataclass(frozen=True)
class AuditKey:
    key_id: str
    secret: bytes = field(repr=False)


def seal(key: AuditKey, event_hash: str) -> str:
    return hmac.new(key.secret, event_hash.encode("ascii"), hashlib.sha256).hexdigest()


def audit_key_id(secret: bytes) -> str:
    """A public name for a key (stored on each event so retired keys still verify their seals)."""
    return hashlib.sha256(b"prompt-governance audit key id:" + secret).hexdigest()[:16]


def parse_audit_key(text: str, source: str) -> AuditKey:
    """An audit key from its hex text (at least 32 bytes)."""
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise AuditKeyMissing(f"{source}: the audit key is not hex text (create one with `{AUDIT_KEY_HINT}`)") \
            from None
    if len(secret) < _AUDIT_KEY_BYTES:
        raise AuditKeyMissing(f"{source}: the audit key has {len(secret)} bytes; at least {_AUDIT_KEY_BYTES} are "
                              f"needed (create one with `{AUDIT_KEY_HINT}`)")
    return AuditKey(audit_key_id(secret), secret)


def write_audit_key_file(path: Path) -> AuditKey:
    """Create a new random key at `path`, readable by the owner only; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_hex(_AUDIT_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return parse_audit_key(text, str(path))


def configured_audit_key() -> AuditKey | None:
    """The current audit key from GOVERNANCE_AUDIT_KEY or its file, or None when neither exists."""
    if settings.GOVERNANCE_AUDIT_KEY:
        return _parsed(settings.GOVERNANCE_AUDIT_KEY, "GOVERNANCE_AUDIT_KEY")
    path = Path(settings.GOVERNANCE_AUDIT_KEY_PATH)
    try:
        return _key_file(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None


def audit_key() -> AuditKey:
    """The key new events are sealed with. A missing key is created only when
    GOVERNANCE_AUDIT_KEY_AUTOCREATE is set (default: DEBUG); otherwise audited writes are refused."""
    key = configured_audit_key()
    if key is not None:
        return key
    path = Path(settings.GOVERNANCE_AUDIT_KEY_PATH)
    if settings.GOVERNANCE_AUDIT_KEY_AUTOCREATE:
        try:
            key = write_audit_key_file(path)
            logger.warning("created the audit key %s (GOVERNANCE_AUDIT_KEY_AUTOCREATE); back it up", path)
            return key
        except FileExistsError:  # another process created it first
            return configured_audit_key() or _missing(path)
    return _missing(path)


def audit_keyring() -> dict[str, bytes]:
    """Every key seals may have been made with: the current one and GOVERNANCE_AUDIT_RETIRED_KEY_PATHS."""
    keys = [key for key in (configured_audit_key(),) if key is not None]
    for retired in settings.GOVERNANCE_AUDIT_RETIRED_KEY_PATHS:
        path = Path(retired)
        try:
            keys.append(_key_file(str(path), path.stat().st_mtime_ns))
        except FileNotFoundError:
            raise AuditKeyMissing(f"retired audit key {path} (GOVERNANCE_AUDIT_RETIRED_KEY_PATHS) does not exist") \
                from None
    return {key.key_id: key.secret for key in keys}


def _missing(path: Path) -> AuditKey:
    raise AuditKeyMissing(f"no audit key: {path} does not exist and GOVERNANCE_AUDIT_KEY is empty; audited "
                          f"changes are refused until one exists (create it with `{AUDIT_KEY_HINT}`)")


@lru_cache(maxsize=8)
def _parsed(text: str, source: str) -> AuditKey:
    return parse_audit_key(text, source)


@lru_cache(maxsize=8)
def _key_file(path: str, mtime_ns: int) -> AuditKey:
    """Read once per file version (the modification time is part of the cache key)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyMissing(f"audit key {path} cannot be read: {exc}") from exc
    return parse_audit_key(text, path)


# --- walking the chain ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def events_in_order(page_size: int = 2000, *, after_id: int = 0, up_to: int | None = None) -> Iterator[AuditEvent]:
    """Events by id (after `after_id`, up to `up_to`), in pages: plain queries, so no server-side cursor is
    left open on an early return."""
    last_id = after_id
    while True:
        events = AuditEvent.objects.filter(id__gt=last_id)
        if up_to is not None:
            events = events.filter(id__lte=up_to)
        page = list(events.order_by("id")[:page_size])
        if not page:
            return
        yield from page
        last_id = page[-1].id


@dataclass
class _Walker:
    """Checks links, hashes and seals in order; `sealed` is true once seals are required (after the first
    sealed event, or after any checkpoint)."""

    keyring: dict[str, bytes] | None
    previous: str = GENESIS_HASH
    sealed: bool = False
    count: int = 0

    def check(self, event: AuditEvent) -> ChainBreak | None:
        if event.prev_hash != self.previous:
            return ChainBreak(event.pk, f"event {event.pk} does not link to the event before it "
                                        f"(a row was removed or inserted)")
        if compute_hash(self.previous, event_content(event)) != event.hash:
            return ChainBreak(event.pk, f"event {event.pk} ({event.action}) was altered after it was written")
        broken = self._check_seal(event)
        if broken is None:
            self.previous = event.hash
            self.count += 1
        return broken

    def _check_seal(self, event: AuditEvent) -> ChainBreak | None:
        if self.keyring is None:  # links and hashes only
            return None
        if not event.seal:
            if self.sealed:
                return ChainBreak(event.pk, f"event {event.pk} ({event.action}) carries no seal: it was written "
                                            f"without the audit key, not by the application")
            return None
        self.sealed = True
        secret = self.keyring.get(event.seal_key_id)
        if secret is None:
            return ChainBreak(event.pk, f"event {event.pk} ({event.action}) is sealed with audit key "
                                        f"{event.seal_key_id!r}, which is not configured (a forged seal, or a "
                                        f"retired key missing from GOVERNANCE_AUDIT_RETIRED_KEY_PATHS)")
        if not hmac.compare_digest(seal(AuditKey(event.seal_key_id, secret), event.hash), event.seal):
            return ChainBreak(event.pk, f"event {event.pk} ({event.action}) has a seal that does not match its "
                                        f"hash: it was altered and re-hashed by someone without the audit key")
        return None


def verify_chain(events: Iterable[AuditEvent] | None = None, *, check_seals: bool = True) -> ChainBreak | None:
    """Walk the chain from its first event; return the first broken link or seal, or None when it is intact."""
    walker = _Walker(audit_keyring() if check_seals else None)
    for event in events if events is not None else events_in_order():
        broken = walker.check(event)
        if broken is not None:
            return broken
    return None


# --- checkpoints ---------------------------------------------------------------------------------------------


class AuditChainBroken(GovernanceError):
    """A checkpoint was refused: the chain it would vouch for does not verify."""

    code = "audit_chain_broken"
    http_status = 409


@dataclass(frozen=True)
class Statement:
    """What a checkpoint says and signs."""

    event_count: int
    last_event_id: int
    head_hash: str
    created_at: str
    key_fingerprint: str
    signature: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"statement": CHECKPOINT_STATEMENT, **asdict(self)}

    def signed_bytes(self) -> bytes:
        """Canonical JSON of everything but the signature."""
        return canonical_json({k: v for k, v in self.as_json().items() if k != "signature"}).encode("utf-8")

    def describe(self) -> str:
        return f"{self.event_count} events up to event #{self.last_event_id} at {self.created_at}"

    @classmethod
    def from_json(cls, data: Any) -> Statement:
        if not isinstance(data, dict) or data.get("statement") != CHECKPOINT_STATEMENT:
            raise ValueError("not an audit checkpoint statement")
        try:
            return cls(int(data["event_count"]), int(data["last_event_id"]), str(data["head_hash"]),
                       str(data["created_at"]), str(data["key_fingerprint"]), str(data["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint statement lacks or garbles {exc}") from None

    @classmethod
    def from_row(cls, row: AuditCheckpoint) -> Statement:
        return cls(row.event_count, row.last_event_id, row.head_hash,
                   row.created_at.isoformat(timespec="microseconds"), row.key_fingerprint, row.signature)


def sign_statement(statement: Statement, key: Ed25519PrivateKey) -> Statement:
    unsigned = replace(statement, key_fingerprint=key_fingerprint(public_key_raw(key)), signature="")
    return replace(unsigned, signature=base64.b64encode(key.sign(unsigned.signed_bytes())).decode("ascii"))


def trusted_public_keys(extra: Iterable[str] = ()) -> dict[str, Ed25519PublicKey]:
    """Keys a checkpoint may be signed with, by fingerprint: the configured signing key's public half (when
    one is configured) and any public keys given (base64 or PEM, e.g. of a retired signing key)."""
    keys: dict[str, Ed25519PublicKey] = {}
    try:
        public = signing_key().public_key()
        keys[key_fingerprint(public_key_raw(public))] = public
    except ImproperlyConfigured:
        pass
    for value in extra:
        try:
            raw = parse_public_key(value)
        except BundleError as exc:
            raise ImproperlyConfigured(f"public key {value[:24]!r}...: {exc}") from exc
        keys[key_fingerprint(raw)] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def signature_problem(statement: Statement, keys: dict[str, Ed25519PublicKey]) -> str:
    """Why the statement's signature does not hold, or "" when it does."""
    public = keys.get(statement.key_fingerprint)
    if public is None:
        if not keys:
            return "cannot be checked: no export signing key is configured and no public key was given"
        return f"is signed by key {statement.key_fingerprint[:16]}..., which is not a trusted key"
    try:
        public.verify(base64.b64decode(statement.signature, validate=True), statement.signed_bytes())
    except (InvalidSignature, ValueError):
        return "does not carry a valid signature (it was altered or forged)"
    return ""


def database_problem(statement: Statement, *, count_events: bool = True) -> tuple[str, str]:
    """(kind, message) when the database no longer matches the statement, else ("", "").

    `count_events=False` checks only the recorded head event (one row): pages use it, so their cost does not grow
    with the history. Counting the events up to the checkpoint (a deletion or insertion below the head) walks
    the whole covered range; the verification job and `verify_audit` do it, and the database refuses both
    changes anyway (migration 0002's triggers)."""
    head = AuditEvent.objects.filter(pk=statement.last_event_id).values_list("hash", flat=True).first()
    count = (AuditEvent.objects.filter(pk__lte=statement.last_event_id).count() if count_events
             else statement.event_count)
    if head is None or count < statement.event_count:
        missing = f" and event #{statement.last_event_id} is gone" if head is None else ""
        return "truncated", (f"audit trail truncated: a checkpoint recorded {statement.describe()}; the database "
                             f"holds {count} events up to that point{missing}")
    if head != statement.head_hash:
        return "rewritten", (f"audit trail rewritten: event #{statement.last_event_id} has hash {head[:16]}..., "
                             f"not the {statement.head_hash[:16]}... a checkpoint recorded ({statement.describe()})")
    if count > statement.event_count:
        return "rewritten", (f"audit trail rewritten: a checkpoint recorded {statement.describe()}; the database "
                             f"holds {count} events up to that point (events were inserted)")
    return "", ""


def write_checkpoint(*, origin: str) -> AuditCheckpoint | None:
    """Sign and store a checkpoint of the current head, append it to the anchor file and POST it to the
    receiver. None when there is nothing new since the last checkpoint.

    The events since the last good checkpoint are verified first: a checkpoint never vouches for a broken
    chain (AuditChainBroken). ImproperlyConfigured when there is no signing key.
    """
    key = signing_key()
    with transaction.atomic():
        _lock(_CHECKPOINT_LOCK_ID)
        head = AuditEvent.objects.order_by("-id").values("id", "hash").first()
        latest = AuditCheckpoint.objects.order_by("-last_event_id").first()
        if head is None or (latest is not None and latest.last_event_id >= head["id"]):
            return None
        report = verify_trail(up_to=head["id"])
        if report.problems:
            raise AuditChainBroken("no checkpoint written: " + "; ".join(p.message for p in report.problems))
        now = timezone.now()
        statement = sign_statement(Statement(report.event_count, head["id"], head["hash"],
                                             now.isoformat(timespec="microseconds"), ""), key)
        checkpoint = AuditCheckpoint.objects.create(
            created_at=now, event_count=statement.event_count,
            last_event_id=statement.last_event_id, head_hash=statement.head_hash,
            key_fingerprint=statement.key_fingerprint, signature=statement.signature, origin=origin)
        # Appended before commit: an anchor line whose row then rolls back still states a true fact about
        # committed events, while a committed row missing from the anchor would weaken the anchor.
        append_to_anchor(statement)
    post_to_receiver(statement)
    return checkpoint


def checkpoint_if_due(event_id: int) -> AuditCheckpoint | None:
    """After commit: checkpoint once GOVERNANCE_AUDIT_CHECKPOINT_EVERY events have accumulated since the last
    one. Best effort: a failure is logged and the next committed event tries again."""
    global _retry_after
    every = settings.GOVERNANCE_AUDIT_CHECKPOINT_EVERY
    if every <= 0 or event_id < _retry_after:
        return None
    last = AuditCheckpoint.objects.order_by("-last_event_id").values_list("last_event_id", flat=True).first()
    if event_id - (last or 0) < every:
        return None
    try:
        return write_checkpoint(origin="auto")
    except (ImproperlyConfigured, GovernanceError, DatabaseError, OSError) as exc:
        # A failed attempt re-walked the events since the last checkpoint: not again on every commit.
        _retry_after = event_id + every
        _warn_once(f"automatic audit checkpoint not written: {exc}")
        return None


_retry_after = 0  # this process tries an automatic checkpoint again from this event id on
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning per distinct reason and process: a missing signing key would otherwise warn on every commit."""
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
    else:
        logger.debug(message)


# --- the anchor outside the database -------------------------------------------------------------------------


class AnchorError(Exception):
    """The anchor file cannot be read as checkpoints."""


def anchor_path() -> Path | None:
    value = settings.GOVERNANCE_AUDIT_ANCHOR_PATH
    return Path(value) if value else None


def append_to_anchor(statement: Statement) -> Path | None:
    """Append one JSON line (O_APPEND: concurrent appends never interleave) and fsync it."""
    path = anchor_path()
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(statement.as_json(), sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def latest_anchor_statement(path: Path | None = None) -> Statement | None:
    """The anchor file's last checkpoint (reads only the file's tail), or None when there is none."""
    path = path or anchor_path()
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            tail = handle.read()
    except FileNotFoundError:
        return None
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return Statement.from_json(json.loads(lines[-1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnchorError(f"the anchor file {path} ends in a line that is not a checkpoint: {exc}") from None


def post_to_receiver(statement: Statement) -> bool:
    """POST the statement to GOVERNANCE_AUDIT_ANCHOR_URL (if set); a failure is logged, never raised."""
    url = settings.GOVERNANCE_AUDIT_ANCHOR_URL
    if not url:
        return False
    body = json.dumps(statement.as_json(), sort_keys=True).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "X-Event": "audit.checkpoint"})
    try:
        with urllib.request.urlopen(request, timeout=settings.GOVERNANCE_AUDIT_ANCHOR_TIMEOUT) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("audit checkpoint not delivered to %s: %s", url, exc)
        return False


# --- verification --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing verification found. kind: forged_checkpoint, truncated, rewritten or broken."""

    kind: str
    message: str
    event_id: int | None = None


@dataclass
class TrailReport:
    problems: list[Problem] = field(default_factory=list)
    event_count: int = 0  # events up to the verified head
    head: str = ""
    checkpoint: Statement | None = None  # the last good checkpoint the walk started from
    walked: int = 0


def verify_trail(*, full: bool = False, up_to: int | None = None, public_keys: Iterable[str] = (),
                 progress: Callable[[int], None] | None = None) -> TrailReport:
    """Check the anchor's and the database's latest checkpoints against the events, then walk links, hashes and
    seals from the last good checkpoint (from the first event when `full`) to the head (or `up_to`).

    Raises:
        AuditKeyMissing: seals cannot be checked (no audit key, or a retired key file is missing).
    """
    report = TrailReport()
    keyring = audit_keyring()
    if not keyring and AuditEvent.objects.exclude(seal="").exists():
        raise AuditKeyMissing(f"cannot check the seals: no audit key is configured (GOVERNANCE_AUDIT_KEY or "
                              f"{settings.GOVERNANCE_AUDIT_KEY_PATH})")
    good = _last_good_checkpoint(report, trusted_public_keys(public_keys))
    report.checkpoint = good
    start = None if full else good
    walker = _Walker(keyring, previous=start.head_hash if start else GENESIS_HASH, sealed=start is not None)
    for event in events_in_order(after_id=start.last_event_id if start else 0, up_to=up_to):
        broken = walker.check(event)
        if broken is not None:
            report.problems.append(Problem("broken", f"audit chain broken at event #{broken.event_id}: "
                                                     f"{broken.reason}", broken.event_id))
            break
        report.walked += 1
        if progress is not None and report.walked % 10000 == 0:
            progress(report.walked)
    _count_head(report, up_to)
    return report


def _last_good_checkpoint(report: TrailReport, keys: dict[str, Ed25519PublicKey]) -> Statement | None:
    """The latest checkpoint whose signature holds and which the database still matches.

    The anchor file's latest is judged first, then the database's, newest first, down to the anchor's. A failing
    anchor checkpoint and the newest failing database one are problems in the report; older failures follow
    from the same damage and are passed over in search of a good one to walk from.
    """
    anchored = _anchored(report)
    good: Statement | None = None
    if anchored is not None:
        problem = _statement_problem("the anchor file's latest checkpoint", anchored, keys)
        if problem is None:
            good = anchored
        else:
            report.problems.append(problem)
    reported = False
    for row in _checkpoints_newest_first(above=good.last_event_id if good else -1):
        statement = Statement.from_row(row)
        if statement == anchored:
            continue  # the anchor's own statement, judged above
        problem = _statement_problem(f"checkpoint #{row.pk}", statement, keys)
        if problem is None:
            return statement
        if not reported:
            report.problems.append(problem)
            reported = True
    return good


def _anchored(report: TrailReport) -> Statement | None:
    try:
        return latest_anchor_statement()
    except AnchorError as exc:
        report.problems.append(Problem("forged_checkpoint", str(exc)))
        return None


def _checkpoints_newest_first(*, above: int, page_size: int = 100) -> Iterator[AuditCheckpoint]:
    rows = AuditCheckpoint.objects.filter(last_event_id__gt=above).order_by("-last_event_id")
    below: int | None = None
    while True:
        page = list((rows if below is None else rows.filter(last_event_id__lt=below))[:page_size])
        if not page:
            return
        yield from page
        below = page[-1].last_event_id


def _statement_problem(source: str, statement: Statement, keys: dict[str, Ed25519PublicKey], *,
                       count_events: bool = True) -> Problem | None:
    why = signature_problem(statement, keys)
    if why:
        return Problem("forged_checkpoint", f"audit checkpoint refused: {source} ({statement.describe()}) {why}")
    kind, message = database_problem(statement, count_events=count_events)
    return Problem(kind, f"{message} ({source})", statement.last_event_id) if kind else None


def _count_head(report: TrailReport, up_to: int | None) -> None:
    events = AuditEvent.objects.all() if up_to is None else AuditEvent.objects.filter(id__lte=up_to)
    report.event_count = events.count()
    report.head = events.order_by("-id").values_list("hash", flat=True).first() or ""


# --- what pages show -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointStatus:
    """The latest checkpoint and whether it still holds, for pages: a few queries, never a walk."""

    checkpoint: Statement | None
    problems: list[str]
    events_total: int
    events_after: int

    @property
    def verified(self) -> bool:
        return self.checkpoint is not None and not self.problems

    @property
    def created_at(self) -> datetime | None:
        return datetime.fromisoformat(self.checkpoint.created_at) if self.checkpoint else None


def checkpoint_status() -> CheckpointStatus:
    """What a page shows: the latest signed checkpoint (signature, and its head event still in place) and how
    many events came after it. Costs the same at any history size: no count of the covered range (see
    database_problem) and the total is the checkpoint's own count plus the events after it."""
    keys = trusted_public_keys()
    problems: list[str] = []
    latest_row = AuditCheckpoint.objects.order_by("-last_event_id").first()
    statements = [("the latest checkpoint", Statement.from_row(latest_row))] if latest_row else []
    try:
        anchored = latest_anchor_statement()
    except AnchorError as exc:
        problems.append(str(exc))
        anchored = None
    if anchored is not None and (not statements or anchored != statements[0][1]):
        statements.append(("the anchor file's latest checkpoint", anchored))
    for source, statement in statements:
        problem = _statement_problem(source, statement, keys, count_events=False)
        if problem is not None:
            problems.append(problem.message)
    checkpoint = max((s for _, s in statements), key=lambda s: s.last_event_id, default=None)
    if checkpoint is None:
        return CheckpointStatus(None, problems, AuditEvent.objects.count(), 0)
    after = AuditEvent.objects.filter(id__gt=checkpoint.last_event_id).count()
    return CheckpointStatus(checkpoint, problems, checkpoint.event_count + after, after)
