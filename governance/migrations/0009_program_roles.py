"""Per-program roles (issue 18): ProgramMembership becomes the through table of Program.members and carries each
member's roles on that program, with its own django-simple-history table.

Existing members keep working: each member (and each owner without a membership row) gets, on that program,
the program-scoped roles (author, reviewer, releaser, auditor) they held as global groups, source "migration",
with a history row saying so. Django cannot add `through=` to an existing many-to-many field, so the rows are
copied into the new table, the old field (and its table) removed and the field added back over the new table.
The old m2m history table (HistoricalProgram_members) leaves the model state but stays in the database: history
is retained, never dropped. Written by hand: only this change's operations.
"""

import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

PROGRAM_ROLES = ("author", "reviewer", "releaser", "auditor")
SOURCES = [("manual", "Granted by hand"), ("oidc", "Mapped from identity provider groups"),
           ("migration", "Carried over from global roles")]
ROLES_HELP = "The user's roles on this program (sorted); empty: read access only."
GRANTED_BY_HELP = "Who last set the roles; empty: the system."
HISTORY_REASON = "carried over from global roles (migration 0009)"


def _global_program_roles(apps):
    """user id -> the program-scoped roles the user held as global groups."""
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    through = user_model._meta.get_field("groups").remote_field.through
    held = {}
    for user_id, name in through.objects.filter(group__name__in=PROGRAM_ROLES).values_list("user_id", "group__name"):
        held.setdefault(user_id, set()).add(name)
    return held


def memberships_from_global_roles(apps, schema_editor):
    program_model = apps.get_model("governance", "Program")
    membership = apps.get_model("governance", "ProgramMembership")
    history = apps.get_model("governance", "HistoricalProgramMembership")
    old = program_model._meta.get_field("members").remote_field.through
    pairs = set(old.objects.values_list("program_id", "user_id"))
    pairs |= set(program_model.objects.values_list("id", "owner_id"))  # an owner always was a member
    held, now = _global_program_roles(apps), timezone.now()
    for program_id, user_id in sorted(pairs):
        row = membership.objects.create(program_id=program_id, user_id=user_id, source="migration",
                                        roles=sorted(held.get(user_id, ())))
        history.objects.create(id=row.pk, program_id=program_id, user_id=user_id, roles=row.roles,
                               source=row.source, created_at=row.created_at, updated_at=row.updated_at,
                               history_date=now, history_type="+", history_change_reason=HISTORY_REASON)


def members_back_to_plain_table(apps, schema_editor):
    program_model = apps.get_model("governance", "Program")
    membership = apps.get_model("governance", "ProgramMembership")
    old = program_model._meta.get_field("members").remote_field.through
    old.objects.bulk_create([old(program_id=p, user_id=u)
                             for p, u in membership.objects.values_list("program_id", "user_id")])


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0008_evaluation_triggers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ProgramMembership",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("roles", models.JSONField(blank=True, default=list, help_text=ROLES_HELP)),
                ("source", models.CharField(choices=SOURCES, default="manual", max_length=16)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("granted_by", models.ForeignKey(blank=True, help_text=GRANTED_BY_HELP, null=True,
                                                 on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                                 to=settings.AUTH_USER_MODEL)),
                ("program", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="memberships",
                                              to="governance.program")),
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                           related_name="program_memberships", to=settings.AUTH_USER_MODEL)),
            ],
            options={"ordering": ["program", "user"]},
        ),
        migrations.AddConstraint(
            model_name="programmembership",
            constraint=models.UniqueConstraint(fields=("program", "user"), name="membership_unique_per_program"),
        ),
        migrations.CreateModel(
            name="HistoricalProgramMembership",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("roles", models.JSONField(blank=True, default=list, help_text=ROLES_HELP)),
                ("source", models.CharField(choices=SOURCES, default="manual", max_length=16)),
                ("created_at", models.DateTimeField(blank=True, editable=False)),
                ("updated_at", models.DateTimeField(blank=True, editable=False)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                ("history_type", models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")],
                                                  max_length=1)),
                ("granted_by", models.ForeignKey(blank=True, db_constraint=False, help_text=GRANTED_BY_HELP, null=True,
                                                 on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                                 to=settings.AUTH_USER_MODEL)),
                ("history_user", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                   related_name="+", to=settings.AUTH_USER_MODEL)),
                ("program", models.ForeignKey(blank=True, db_constraint=False, null=True,
                                              on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                              to="governance.program")),
                ("user", models.ForeignKey(blank=True, db_constraint=False, null=True,
                                           on_delete=django.db.models.deletion.DO_NOTHING, related_name="+",
                                           to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "verbose_name": "historical program membership",
                "verbose_name_plural": "historical program memberships",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.RunPython(memberships_from_global_roles, members_back_to_plain_table),
        migrations.RemoveField(model_name="program", name="members"),
        migrations.AddField(
            model_name="program",
            name="members",
            field=models.ManyToManyField(blank=True, related_name="programs", through="governance.ProgramMembership",
                                         through_fields=("program", "user"), to=settings.AUTH_USER_MODEL),
        ),
        # Program's history no longer snapshots members (memberships have their own history); the old table stays.
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="HistoricalProgram_members")]),
    ]
