"""Playground calls (issue 14, authoring): what a person tried on a version, recorded for them, never evidence."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("governance", "0011_discussion")]
    operations = [
        migrations.CreateModel(
            name='PlaygroundCall',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('content_hash', models.CharField(help_text="The version's content when it was tried (a draft may change afterwards).", max_length=64)),
                ('lm_config', models.JSONField(help_text='Model, temperature, max tokens, mode and endpoint used (no secret).')),
                ('inputs', models.JSONField()),
                ('outputs', models.JSONField(blank=True, default=dict, help_text='Every field parsed along the way.')),
                ('steps', models.JSONField(blank=True, default=list, help_text='Per predictor: the rendered request, the raw answer, the parsed fields.')),
                ('error', models.TextField(blank=True)),
                ('latency_ms', models.PositiveIntegerField(default=0)),
                ('prompt_tokens', models.PositiveIntegerField(default=0)),
                ('completion_tokens', models.PositiveIntegerField(default=0)),
                ('cost_usd', models.FloatField(default=0.0)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('example', models.ForeignKey(blank=True, help_text='The dataset row tried, when the input came from one.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.example')),
                ('program', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='playground_calls', to='governance.program')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='playground_calls', to=settings.AUTH_USER_MODEL)),
                ('version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='playground_calls', to='governance.promptversion')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['user', 'program', '-created_at'], name='playground_user_recent')],
            },
        ),
    ]
