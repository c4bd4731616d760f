"""Approved means frozen: the model guard and the database trigger both refuse content changes and deletes."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError

from governance.actions import retire_version
from governance.errors import FrozenVersionError
from governance.models import PromptVersion, VersionStatus
from tests.governance.conftest import payload_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved(make_approved) -> PromptVersion:
    return make_approved()


def _refused_by_trigger(fn) -> None:
    with pytest.raises(DatabaseError, match="prompt version is frozen"), transaction.atomic():
        fn()


def test_orm_save_with_new_payload_is_refused(approved):
    signed_hash = approved.content_hash
    approved.payload = payload_with(approved.program, "Changed after approval.")
    with pytest.raises(FrozenVersionError, match="version 1 of support is approved and frozen; its payload cannot "
                                                 "change"):
        approved.save()
    stored = PromptVersion.objects.get(pk=approved.pk)
    assert stored.payload != approved.payload and stored.content_hash == signed_hash


def test_queryset_update_of_content_is_refused_by_trigger(approved):
    new_payload = payload_with(approved.program, "Sneaky bulk edit.")
    _refused_by_trigger(lambda: PromptVersion.objects.filter(pk=approved.pk).update(payload=new_payload))
    _refused_by_trigger(lambda: PromptVersion.objects.filter(pk=approved.pk).update(content_hash="0" * 64))
    _refused_by_trigger(lambda: PromptVersion.objects.filter(pk=approved.pk).update(number=99))
    _refused_by_trigger(lambda: PromptVersion.objects.filter(pk=approved.pk).update(status=VersionStatus.DRAFT))


def test_raw_sql_update_is_refused(approved):
    def raw():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE governance_promptversion SET payload = %s WHERE id = %s",
                           ['{"program": {}, "lm": {}}', approved.pk])
    _refused_by_trigger(raw)
    assert PromptVersion.objects.get(pk=approved.pk).payload == approved.payload


def test_delete_is_refused(approved):
    with pytest.raises(FrozenVersionError, match="version 1 is approved; frozen versions cannot be deleted"):
        approved.delete()
    with pytest.raises(ProtectedError), transaction.atomic():  # its reviews and change request hold it too
        PromptVersion.objects.filter(pk=approved.pk).delete()
    with pytest.raises(DatabaseError, match="prompt version is frozen"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_promptversion WHERE id = %s", [approved.pk])
    assert PromptVersion.objects.filter(pk=approved.pk).exists()


def test_approved_to_retired_is_allowed_and_then_final(approved, releaser):
    retired = retire_version(approved, actor=releaser, reason="superseded")
    assert retired.status == VersionStatus.RETIRED and retired.is_frozen
    _refused_by_trigger(lambda: PromptVersion.objects.filter(pk=approved.pk).update(status=VersionStatus.APPROVED))
    retired.note = "notes are not content"  # a non-content field of a frozen version may still change
    retired.save(update_fields=["note"])


def test_drafts_stay_editable_at_the_database(make_version):
    draft = make_version()
    new_payload = payload_with(draft.program, "Drafts change freely.")
    PromptVersion.objects.filter(pk=draft.pk).update(payload=new_payload)
    draft.refresh_from_db()
    assert draft.payload == new_payload
    draft.delete()  # a draft that never was approved may go
    assert not PromptVersion.objects.filter(pk=draft.pk).exists()
