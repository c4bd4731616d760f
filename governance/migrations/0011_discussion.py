"""Discussion (issue 17): comments on change requests (threads, anchors, mentions, review comments), reviewer
assignments with due dates, notifications with their email delivery state, and per-user notification settings.
None of it is part of a version's signed content."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0010_identity"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Comment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('body', models.TextField()),
                ('review', models.BooleanField(default=False, help_text="A reviewer's overall comment posted without a decision (no signature; never counts as an approval).")),
                ('predictor', models.CharField(blank=True, help_text='Anchor: the predictor commented on.', max_length=100)),
                ('anchor', models.CharField(blank=True, choices=[('instruction', 'Instruction'), ('demo', 'Demo')], max_length=12)),
                ('demo_index', models.PositiveIntegerField(blank=True, help_text="Anchor: the demo's position (0-based).", null=True)),
                ('content_hash', models.CharField(help_text='The content the comment was written on.', max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('edited_at', models.DateTimeField(blank=True, null=True)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('author', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('change_request', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='comments', to='governance.changerequest')),
                ('mentions', models.ManyToManyField(blank=True, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('parent', models.ForeignKey(blank=True, help_text="The thread's first comment; empty for a thread's first comment.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='replies', to='governance.comment')),
                ('resolved_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('version', models.ForeignKey(help_text='The version under review when the comment was written.', on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.promptversion')),
            ],
            options={
                'ordering': ['created_at', 'id'],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('anchor', ''), ('demo_index__isnull', True), ('predictor', '')), models.Q(('anchor', 'instruction'), ('demo_index__isnull', True), models.Q(('predictor', ''), _negated=True)), models.Q(('anchor', 'demo'), ('demo_index__isnull', False), models.Q(('predictor', ''), _negated=True)), _connector='OR'), name='comment_anchor_complete')],
            },
        ),
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('review_requested', 'Review requested'), ('changes_requested', 'Changes requested'), ('approved', 'Change approved'), ('rejected', 'Change rejected'), ('released', 'Release or rollback'), ('run_finished', 'Optimization run finished'), ('run_failed', 'Optimization run failed'), ('drift_alert', 'Drift alert'), ('mentioned', 'Mentioned in a comment'), ('commented', 'New comment on your change or thread')], max_length=24)),
                ('subject_type', models.CharField(help_text='change_request, run, release, drift_alert, comment', max_length=40)),
                ('subject_id', models.CharField(max_length=64)),
                ('text', models.CharField(max_length=500)),
                ('link', models.CharField(help_text='Portal path of the subject.', max_length=300)),
                ('in_app', models.BooleanField(default=True, help_text="Shown in the portal (the recipient's setting).")),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('read_at', models.DateTimeField(blank=True, null=True)),
                ('email_status', models.CharField(blank=True, choices=[('', 'Not emailed'), ('pending', 'Waiting to be sent'), ('sent', 'Sent'), ('failed', 'Given up')], default='', max_length=8)),
                ('email_attempts', models.PositiveIntegerField(default=0)),
                ('email_next_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('email_error', models.TextField(blank=True)),
                ('emailed_at', models.DateTimeField(blank=True, null=True)),
                ('actor', models.ForeignKey(blank=True, help_text='Who caused it; empty: the system.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('program', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.program')),
                ('recipient', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='notifications', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['recipient', 'in_app', 'read_at'], name='notification_inbox'), models.Index(fields=['email_status', 'email_next_attempt_at'], name='notification_email_due')],
            },
        ),
        migrations.CreateModel(
            name='NotificationSetting',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('review_requested', 'Review requested'), ('changes_requested', 'Changes requested'), ('approved', 'Change approved'), ('rejected', 'Change rejected'), ('released', 'Release or rollback'), ('run_finished', 'Optimization run finished'), ('run_failed', 'Optimization run failed'), ('drift_alert', 'Drift alert'), ('mentioned', 'Mentioned in a comment'), ('commented', 'New comment on your change or thread')], max_length=24)),
                ('in_app', models.BooleanField(default=True)),
                ('email', models.BooleanField(default=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='notification_settings', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['user', 'kind'],
                'constraints': [models.UniqueConstraint(fields=('user', 'kind'), name='one_notification_setting_per_kind')],
            },
        ),
        migrations.CreateModel(
            name='ReviewerAssignment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('due_date', models.DateField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('removed_at', models.DateTimeField(blank=True, null=True)),
                ('assigned_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('change_request', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='assignments', to='governance.changerequest')),
                ('removed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('reviewer', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='review_assignments', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['created_at', 'id'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('removed_at', None)), fields=('change_request', 'reviewer'), name='one_live_assignment_per_reviewer')],
            },
        ),
    ]
