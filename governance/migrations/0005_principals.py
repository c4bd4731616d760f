"""Principals: AccountState (must-change-password, who set the password, activity and roles snapshot, service
account flag), hashed API keys (both with django-simple-history tables) and portal login throttles. Written by
hand: only this change's operations."""

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
                ("service_account", models.BooleanField(default=False, help_text="A machine principal: no password, never signs, authenticates with API keys.")),
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
                ("service_account", models.BooleanField(default=False, help_text="A machine principal: no password, never signs, authenticates with API keys.")),
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
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(help_text="The key's public start, to recognize it.", max_length=16, unique=True)),
                ("key_hash", models.CharField(help_text="SHA-256 of the key (hex).", max_length=64, unique=True)),
                ("bundle_only", models.BooleanField(default=False, help_text="Only fetches release bundles (read-only).")),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("owner", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="api_keys", to=settings.AUTH_USER_MODEL)),
                ("programs", models.ManyToManyField(blank=True, help_text="Empty: every program the owner may see.", related_name="+", to="governance.program")),
                ("revoked_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "API key", "ordering": ["-created_at", "-id"]},
        ),
        migrations.CreateModel(
            name="HistoricalApiKey",
            fields=[
                ("id", models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(db_index=True, help_text="The key's public start, to recognize it.", max_length=16)),
                ("key_hash", models.CharField(db_index=True, help_text="SHA-256 of the key (hex).", max_length=64)),
                ("bundle_only", models.BooleanField(default=False, help_text="Only fetches release bundles (read-only).")),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(blank=True, editable=False)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("history_id", models.AutoField(primary_key=True, serialize=False)),
                ("history_date", models.DateTimeField(db_index=True)),
                ("history_change_reason", models.CharField(max_length=100, null=True)),
                ("history_type", models.CharField(choices=[("+", "Created"), ("~", "Changed"), ("-", "Deleted")], max_length=1)),
                ("created_by", models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("history_user", models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("owner", models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to=settings.AUTH_USER_MODEL)),
                ("revoked_by", models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "verbose_name": "historical API key",
                "verbose_name_plural": "historical API keys",
                "ordering": ("-history_date", "-history_id"),
                "get_latest_by": ("history_date", "history_id"),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name="LoginThrottle",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("username", models.CharField(help_text="Case-folded, as typed.", max_length=150, unique=True)),
                ("failures", models.PositiveIntegerField(default=0)),
                ("first_failure_at", models.DateTimeField(blank=True, null=True)),
                ("lockouts", models.PositiveIntegerField(default=0)),
                ("locked_until", models.DateTimeField(blank=True, null=True)),
            ],
        ),
    ]
