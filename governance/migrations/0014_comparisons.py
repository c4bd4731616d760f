"""Compare views (issues 14 and 17): each per-example result keeps what its metric said beyond the score (an LM
judge's verdict and reason). A nullable column with no default, so SQLite adds it in place (ALTER TABLE ADD
COLUMN) and the append-only triggers of 0008 on the results table stay."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("governance", "0013_scale")]

    operations = [
        migrations.AddField(
            model_name="evaluationresult",
            name="feedback",
            field=models.JSONField(blank=True, help_text="What the metric said beyond the score: an LM judge's "
                                   "verdict and reason. Null when the metric gives none.", null=True),
        ),
    ]
