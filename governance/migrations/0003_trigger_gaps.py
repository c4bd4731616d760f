"""Placeholder in the migration chain; filled by the change that owns it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0002_integrity_triggers")]

    operations = []
