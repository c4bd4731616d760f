"""Reserved for: playground calls and authoring records (issue 14, authoring helper). Empty until that work lands; the number is fixed so parallel work does not collide."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0011_discussion")]
    operations: list = []
