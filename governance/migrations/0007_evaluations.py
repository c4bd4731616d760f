"""System evaluations (the only source of scores), and the change request fields that point at them."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('governance', '0006_hardening'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='changerequest',
            name='checks',
            field=models.JSONField(blank=True, default=list, help_text='Automatic candidate checks (findings).'),
        ),
        migrations.AddField(
            model_name='changerequest',
            name='comparison',
            field=models.JSONField(blank=True, default=dict, help_text='Paired comparison of the two evaluations (set by the system).'),
        ),
        migrations.AddField(
            model_name='changerequest',
            name='eval_dataset',
            field=models.ForeignKey(blank=True, help_text='The test dataset both versions are evaluated on.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.dataset'),
        ),
        migrations.AddField(
            model_name='historicalchangerequest',
            name='checks',
            field=models.JSONField(blank=True, default=list, help_text='Automatic candidate checks (findings).'),
        ),
        migrations.AddField(
            model_name='historicalchangerequest',
            name='comparison',
            field=models.JSONField(blank=True, default=dict, help_text='Paired comparison of the two evaluations (set by the system).'),
        ),
        migrations.AddField(
            model_name='historicalchangerequest',
            name='eval_dataset',
            field=models.ForeignKey(blank=True, db_constraint=False, help_text='The test dataset both versions are evaluated on.', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='governance.dataset'),
        ),
        migrations.AlterField(
            model_name='changerequest',
            name='recommended',
            field=models.BooleanField(default=False, help_text="True only when the system's paired comparison shows the candidate beats production by more than chance."),
        ),
        migrations.AlterField(
            model_name='historicalchangerequest',
            name='recommended',
            field=models.BooleanField(default=False, help_text="True only when the system's paired comparison shows the candidate beats production by more than chance."),
        ),
        migrations.CreateModel(
            name='Evaluation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('content_hash', models.CharField(help_text="Hash of the evaluated payload (a version's, or the program spec's initial payload).", max_length=64)),
                ('payload', models.JSONField(help_text='The evaluated payload, kept so the evaluation can be reproduced.')),
                ('dataset_hash', models.CharField(max_length=64)),
                ('lm_config', models.JSONField(help_text='Model, temperature, max tokens, mode and endpoint used (no secret).')),
                ('lm_key', models.CharField(help_text='Hash of lm_config: part of the reuse key.', max_length=64)),
                ('metric', models.CharField(max_length=200)),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16)),
                ('score', models.FloatField(blank=True, null=True)),
                ('examples', models.PositiveIntegerField(default=0)),
                ('examples_done', models.PositiveIntegerField(default=0)),
                ('errors', models.PositiveIntegerField(default=0, help_text='Examples whose call or parse failed.')),
                ('calls', models.PositiveIntegerField(default=0)),
                ('cached_calls', models.PositiveIntegerField(default=0)),
                ('prompt_tokens', models.PositiveBigIntegerField(default=0)),
                ('completion_tokens', models.PositiveBigIntegerField(default=0)),
                ('cost_usd', models.FloatField(default=0.0)),
                ('seconds', models.FloatField(default=0.0)),
                ('error', models.TextField(blank=True)),
                ('worker', models.CharField(blank=True, max_length=200)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('dataset', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='evaluations', to='governance.dataset')),
                ('program', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='evaluations', to='governance.program')),
                ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('run', models.ForeignKey(blank=True, help_text='The run whose final evaluation produced it.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='evaluations', to='governance.optimizationrun')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.AddField(
            model_name='changerequest',
            name='baseline_evaluation',
            field=models.ForeignKey(blank=True, help_text='What production serves (or the program spec), same rows.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.evaluation'),
        ),
        migrations.AddField(
            model_name='changerequest',
            name='candidate_evaluation',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='governance.evaluation'),
        ),
        migrations.AddField(
            model_name='historicalchangerequest',
            name='baseline_evaluation',
            field=models.ForeignKey(blank=True, db_constraint=False, help_text='What production serves (or the program spec), same rows.', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='governance.evaluation'),
        ),
        migrations.AddField(
            model_name='historicalchangerequest',
            name='candidate_evaluation',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='governance.evaluation'),
        ),
        migrations.CreateModel(
            name='EvaluationResult',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveIntegerField(help_text="The example's index in its dataset.")),
                ('predicted', models.JSONField(default=dict)),
                ('raw', models.TextField(blank=True)),
                ('score', models.FloatField()),
                ('error', models.TextField(blank=True)),
                ('evaluation', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='results', to='governance.evaluation')),
            ],
            options={
                'ordering': ['evaluation', 'index'],
            },
        ),
        migrations.AddIndex(
            model_name='evaluation',
            index=models.Index(fields=['program', 'content_hash'], name='governance__program_bda33d_idx'),
        ),
        migrations.AddConstraint(
            model_name='evaluation',
            constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['queued', 'running', 'succeeded'])), fields=('program', 'content_hash', 'dataset_hash', 'lm_key', 'metric'), name='one_live_evaluation_per_key'),
        ),
        migrations.AddConstraint(
            model_name='evaluationresult',
            constraint=models.UniqueConstraint(fields=('evaluation', 'index'), name='evaluation_result_unique'),
        ),
    ]
