"""OIDC identities, SSO signatures, portal sessions (issue 18, OIDC helper).

Reviews gain the provider's account of a signature (issuer, sub, auth_time): nullable columns, so SQLite adds them
with ALTER TABLE and keeps the table's triggers; the signed-record triggers of 0003 are then extended to freeze
them too (only voiding an approval may change a review).
"""

import importlib

import django.db.models.deletion
import simple_history.models
from django.conf import settings
from django.db import migrations, models

TRIGGERS_0003 = importlib.import_module("governance.migrations.0003_trigger_gaps")
SIGNED_BY_PROVIDER = ("auth_issuer", "auth_subject", "auth_time")
REVIEW_SIGNED_COLUMNS = TRIGGERS_0003.REVIEW_SIGNED_COLUMNS + SIGNED_BY_PROVIDER


def _review_triggers(columns):
    changed = TRIGGERS_0003._changed
    sqlite = [
        "DROP TRIGGER IF EXISTS governance_review_signed_update",
        f"""CREATE TRIGGER governance_review_signed_update BEFORE UPDATE ON governance_review
            WHEN {changed(columns, 'IS NOT')}
                 OR (NEW.voided IS NOT OLD.voided AND NOT (OLD.voided = 0 AND NEW.voided = 1))
            BEGIN SELECT RAISE(ABORT, 'reviews are signed records: only voiding an approval may change one'); END""",
    ]
    postgresql = [
        f"""CREATE OR REPLACE FUNCTION governance_review_signed() RETURNS trigger AS $$
            BEGIN
              IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'reviews are signed records: DELETE refused';
              END IF;
              IF {changed(columns, 'IS DISTINCT FROM')} OR (OLD.voided AND NOT NEW.voided) THEN
                RAISE EXCEPTION 'reviews are signed records: only voiding an approval may change one';
              END IF;
              RETURN NEW;
            END; $$ LANGUAGE plpgsql""",
    ]
    return {"sqlite": sqlite, "postgresql": postgresql}


class Migration(migrations.Migration):
    dependencies = [("governance", "0009_program_roles"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.AddField(
            model_name='accountstate',
            name='sessions_ended_at',
            field=models.DateTimeField(blank=True, help_text='Logout everywhere: portal sessions started before this no longer count.', null=True),
        ),
        migrations.AddField(
            model_name='historicalaccountstate',
            name='sessions_ended_at',
            field=models.DateTimeField(blank=True, help_text='Logout everywhere: portal sessions started before this no longer count.', null=True),
        ),
        migrations.AddField(
            model_name='historicalreview',
            name='auth_issuer',
            field=models.CharField(blank=True, help_text="The provider's issuer.", max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='historicalreview',
            name='auth_subject',
            field=models.CharField(blank=True, help_text="The signer's `sub` there.", max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='historicalreview',
            name='auth_time',
            field=models.DateTimeField(blank=True, help_text='When the provider authenticated the signer for this signature.', null=True),
        ),
        migrations.AddField(
            model_name='review',
            name='auth_issuer',
            field=models.CharField(blank=True, help_text="The provider's issuer.", max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='review',
            name='auth_subject',
            field=models.CharField(blank=True, help_text="The signer's `sub` there.", max_length=255, null=True),
        ),
        migrations.AddField(
            model_name='review',
            name='auth_time',
            field=models.DateTimeField(blank=True, help_text='When the provider authenticated the signer for this signature.', null=True),
        ),
        migrations.CreateModel(
            name='HistoricalIdentity',
            fields=[
                ('id', models.BigIntegerField(auto_created=True, blank=True, db_index=True, verbose_name='ID')),
                ('issuer', models.CharField(help_text="The provider's issuer URL (the ID token's `iss`).", max_length=255)),
                ('subject', models.CharField(help_text="The provider's identifier of the person (`sub`).", max_length=255)),
                ('claims', models.JSONField(blank=True, default=dict, help_text='Profile claims at the last login (name, e-mail, groups), never tokens.')),
                ('last_login_at', models.DateTimeField(blank=True, null=True)),
                ('disabled_at', models.DateTimeField(blank=True, help_text='When the provider check found the person disabled.', null=True)),
                ('created_at', models.DateTimeField(blank=True, editable=False)),
                ('history_id', models.AutoField(primary_key=True, serialize=False)),
                ('history_date', models.DateTimeField(db_index=True)),
                ('history_change_reason', models.CharField(max_length=100, null=True)),
                ('history_type', models.CharField(choices=[('+', 'Created'), ('~', 'Changed'), ('-', 'Deleted')], max_length=1)),
                ('history_user', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'historical identity',
                'verbose_name_plural': 'historical identities',
                'ordering': ('-history_date', '-history_id'),
                'get_latest_by': ('history_date', 'history_id'),
            },
            bases=(simple_history.models.HistoricalChanges, models.Model),
        ),
        migrations.CreateModel(
            name='PortalSession',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('method', models.CharField(help_text='password or oidc', max_length=20)),
                ('ip_address', models.GenericIPAddressField(blank=True, null=True)),
                ('user_agent', models.CharField(blank=True, max_length=300)),
                ('started_at', models.DateTimeField(auto_now_add=True)),
                ('last_seen_at', models.DateTimeField(blank=True, null=True)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('end_reason', models.CharField(blank=True, max_length=100)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='portal_sessions', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-started_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='SignatureChallenge',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('decision', models.CharField(choices=[('approve', 'Approve'), ('reject', 'Reject'), ('request_changes', 'Request changes')], max_length=20)),
                ('content_hash', models.CharField(help_text='What the page showed the signer.', max_length=64)),
                ('reason', models.TextField(blank=True)),
                ('meaning', models.CharField(choices=[('approval', 'I approve this prompt version for release'), ('rejection', 'I reject this prompt version'), ('review', 'I have reviewed this prompt version and request changes')], max_length=20)),
                ('state_hash', models.CharField(help_text='SHA-256 of the `state` parameter.', max_length=64, unique=True)),
                ('nonce', models.CharField(max_length=100)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('used_at', models.DateTimeField(blank=True, help_text='Set when its callback arrived (single use).', null=True)),
                ('outcome', models.CharField(blank=True, max_length=200)),
                ('change_request', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.changerequest')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name='Identity',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('issuer', models.CharField(help_text="The provider's issuer URL (the ID token's `iss`).", max_length=255)),
                ('subject', models.CharField(help_text="The provider's identifier of the person (`sub`).", max_length=255)),
                ('claims', models.JSONField(blank=True, default=dict, help_text='Profile claims at the last login (name, e-mail, groups), never tokens.')),
                ('refresh_token', models.TextField(blank=True, help_text='Encrypted with a key derived from SECRET_KEY.')),
                ('last_login_at', models.DateTimeField(blank=True, null=True)),
                ('checked_at', models.DateTimeField(blank=True, help_text='Last answer of the provider check.', null=True)),
                ('check_error', models.CharField(blank=True, help_text='Last check that got no answer.', max_length=500)),
                ('disabled_at', models.DateTimeField(blank=True, help_text='When the provider check found the person disabled.', null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='identity', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name_plural': 'identities',
                'constraints': [models.UniqueConstraint(fields=('issuer', 'subject'), name='one_user_per_identity')],
            },
        ),
        migrations.RunPython(TRIGGERS_0003._run(_review_triggers(REVIEW_SIGNED_COLUMNS)),
                             TRIGGERS_0003._run(_review_triggers(TRIGGERS_0003.REVIEW_SIGNED_COLUMNS))),
    ]
