"""Signed exports of approved versions. Every export is an Export row and a `version.exported` audit event.

Only approved (frozen) versions leave the system: drafts, versions in review, rejected, withdrawn and retired
ones are refused. `actor=None` means the system itself (an operator running `manage.py export_version`
without --actor, who already holds the database and the signing key); every other caller passes a user, who
must be a member of the program.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from governance.actions._common import Checks
from governance.audit import record_event
from governance.bundles import build_bundle
from governance.errors import IllegalTransition, NotFound
from governance.models import Export, Program, PromptVersion, ReleaseLabel, VersionStatus
from governance.permissions import require_member
from optimizer import content_hash

EXPORTABLE_STATUSES = (VersionStatus.APPROVED,)


def export_version(version: PromptVersion, *, actor: Any, label: str | None = None,
                   reason: str = "") -> dict[str, Any]:
    """Sign and return the bundle of an approved version, optionally as what release `label` serves.

    Raises:
        PermissionDenied: the actor is not a member of the program.
        IllegalTransition: the version is not approved, or `label` does not serve this version.
        NotFound: the program has no such label.
    """
    program = version.program
    if actor is not None:
        require_member(actor, program)
    with transaction.atomic():
        # No select_related here: PostgreSQL refuses FOR UPDATE across the nullable side of an outer join.
        locked = PromptVersion.objects.select_for_update(no_key=True).get(pk=version.pk)
        _require_exportable(locked)
        release_label = _label_serving(locked, label) if label else None
        bundle = build_bundle(locked, label=release_label, exported_by=actor)
        signature = bundle["signature"]
        export = Export.objects.create(
            version=locked, label=label or "", manifest_hash=content_hash(bundle["manifest"]),
            signature=signature["value"], public_key_fingerprint=signature["key_fingerprint"],
            exported_by=actor if getattr(actor, "pk", None) else None)
        record_event(
            "version.exported", actor=actor, obj=locked, program=program,
            after={"export_id": export.pk, "version": locked.number, "label": label or None,
                   "content_hash": locked.content_hash, "manifest_hash": export.manifest_hash,
                   "key_fingerprint": export.public_key_fingerprint,
                   "approvals": [a["name"] for a in bundle["manifest"]["approvals"]]},
            reason=reason or _default_reason(locked, label, actor))
    return bundle


def export_label(program: Program, label: str, *, actor: Any, reason: str = "") -> dict[str, Any]:
    """Export the version a release label serves now (its fallback while the kill switch is on)."""
    if actor is not None:
        require_member(actor, program)
    with transaction.atomic():
        release_label = _get_label(program, label, lock=True)
        return export_version(release_label.serving_version, actor=actor, label=release_label.name, reason=reason)


def check_export(version: PromptVersion, actor: Any) -> None:
    """A member of the program, and an approved version (what export_version checks, for the portal's button)."""
    if actor is not None:
        require_member(actor, version.program)
    _require_exportable(version)


# What a user may do now (governance.actions.rights gathers these tables).
EXPORT_CHECKS: Checks = {"export": check_export}


def _require_exportable(version: PromptVersion) -> None:
    if version.status not in EXPORTABLE_STATUSES:
        raise IllegalTransition(f"version {version.number} is {version.status}; "
                                "only approved versions can be exported")


def _get_label(program: Program, name: str, *, lock: bool = False) -> ReleaseLabel:
    labels = ReleaseLabel.objects.select_for_update(no_key=True) if lock else ReleaseLabel.objects.all()
    try:
        return labels.get(program=program, name=name)
    except ReleaseLabel.DoesNotExist:
        raise NotFound(f"program {program.slug} has no release label {name!r}", field="label") from None


def _label_serving(version: PromptVersion, name: str) -> ReleaseLabel:
    """The label, which must serve this version: a bundle never claims a release that is not true."""
    release_label = _get_label(version.program, name)
    serving = release_label.serving_version
    if serving.pk != version.pk:
        raise IllegalTransition(
            f"label {name} of {version.program.slug} serves version {serving.number}, not version "
            f"{version.number}; export version {version.number} without a label", field="label")
    return release_label


def _default_reason(version: PromptVersion, label: str | None, actor: Any) -> str:
    what = f"signed export of version {version.number}" + (f" as served by label {label}" if label else "")
    return what if actor is not None else f"{what} (system: command line, no acting user)"
