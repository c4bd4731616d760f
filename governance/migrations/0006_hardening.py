"""Hardening: webhook deliveries carry the time their next attempt is due (retries are scheduled, never slept).

Deliveries still pending when this runs (not delivered, attempts left) become due at once, so the sender picks
them up; finished or given-up ones get no next attempt.
"""

from django.db import migrations, models
from django.db.models.functions import Now

MAX_ATTEMPTS = 6  # governance.webhooks.MAX_ATTEMPTS when this migration was written


def pending_become_due(apps, schema_editor):
    WebhookDelivery = apps.get_model("governance", "WebhookDelivery")
    WebhookDelivery.objects.filter(delivered_at__isnull=True, attempts__lt=MAX_ATTEMPTS).update(next_attempt_at=Now())


class Migration(migrations.Migration):
    dependencies = [("governance", "0005_principals")]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="next_attempt_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True,
                                       help_text="When the next attempt is due; empty when none will be made."),
        ),
        migrations.AlterField(
            model_name="webhooksubscription",
            name="secret",
            field=models.CharField(help_text="Standard Webhooks secret (whsec_...): signs every delivery.",
                                   max_length=128),
        ),
        migrations.RunPython(pending_become_due, migrations.RunPython.noop),
    ]
