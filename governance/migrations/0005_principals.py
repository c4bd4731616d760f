"""Placeholder in the migration chain; filled by the change that owns it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0004_audit_seal_checkpoints")]

    operations = []
