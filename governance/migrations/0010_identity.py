"""Reserved for: OIDC identities, SSO signatures, sessions (issue 18, OIDC helper). Empty until that work lands; the number is fixed so parallel work does not collide."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("governance", "0009_program_roles")]
    operations: list = []
