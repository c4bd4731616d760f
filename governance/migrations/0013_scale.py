"""Reserved for: scale and production (issue 15). Empty until that work lands; the number is fixed so parallel work does not collide."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0012_authoring")]
    operations: list = []
