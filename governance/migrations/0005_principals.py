"""Principals: AccountState (must-change-password, who set the password, activity and roles snapshot) and its
django-simple-history table. Written by hand: only this change's operations."""

import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0004_audit_seal_checkpoints"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AccountState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("must_change_password", models.BooleanField(default=False, help_text="The password was set by someone else: its owner must change it before signing.")),
                ("password_set_at", models.DateTimeField(blank=True, null=True)),
                ("active", models.BooleanField(default=True, help_text="Mirror of User.is_active, for the history timeline.")),
                ("roles", models.JSONField(blank=True, default=list, help_text="The user's global roles (sorted), as granted.")),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("password_set_by", models.ForeignKey(blank=True, help_text="Empty: the owner, or the system.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("user", models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name="account_state", to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "account state"},
        ),
        migrations.CreateModel(
            name="HistoricalAccountState",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("must_change_password", models.BooleanField(default=False, help_text="The password was set by someone else: its owner must change it before signing.")),
                ("password_set_at", models.DateTimeField(blank=True, null=True)),
                ("active", models.BooleanField(default=True, help_text="Mirror of User.is_active, for the history timeline.")),
                ("roles", models.JSONField(blank=True, default=list, help_text="The user's global roles (sorted), as granted.")),
                ("updated_at", models.DateTimeField(blank=True, editable=False)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                ("history_type", models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1)),
                ("history_user", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("password_set_by", models.ForeignKey(blank=True, db_constraint=False, help_text="Empty: the owner, or the system.", null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("user", models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "verbose_name": "historical account state",
                "verbose_name_plural": "historical account states",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
    ]
