"""Reserved for: comments, assignments, notifications (issue 17, discussion helper). Empty until that work lands; the number is fixed so parallel work does not collide."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0010_identity")]
    operations: list = []
