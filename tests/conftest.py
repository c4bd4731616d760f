"""Suite-wide setup: no network for litellm, and every test's files under its own tmp dir."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Audited writes need an audit key (governance.audit). The environment reaches child processes (manage.py,
# Celery workers); pytest_configure sets the same on the settings this process already loaded. No anchor file by
# default: tests that check anchoring give each test its own under tmp_path.
TEST_AUDIT_KEY = "a1" * 32
os.environ.setdefault("GOVERNANCE_AUDIT_KEY", TEST_AUDIT_KEY)
os.environ.setdefault("GOVERNANCE_AUDIT_ANCHOR_PATH", "")


def pytest_configure(config):
    from django.conf import settings

    if settings.configured:
        settings.GOVERNANCE_AUDIT_KEY = os.environ["GOVERNANCE_AUDIT_KEY"]
        settings.GOVERNANCE_AUDIT_ANCHOR_PATH = os.environ["GOVERNANCE_AUDIT_ANCHOR_PATH"]

