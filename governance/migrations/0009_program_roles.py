"""Reserved for: per-program roles (issue 18, roles helper). Empty until that work lands; the number is fixed so parallel work does not collide."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0008_evaluation_triggers")]
    operations: list = []
