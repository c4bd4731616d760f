"""Suite-wide setup: no network for litellm, and every test's files under its own tmp dir."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Audited writes need an audit key (governance.audit). The environment reaches child processes (manage.py,
# Celery workers); pytest_configure sets the same on the settings this process already loaded. No anchor file by
# default: tests that check anchoring give each test its own under tmp_path.
TEST_AUDIT_KEY = "a1" * 32
os.environ.setdefault("GOVERNANCE_AUDIT_KEY", TEST_AUDIT_KEY)
os.environ.setdefault("GOVERNANCE_AUDIT_ANCHOR_PATH", "")
# Servers the tests start (live server, gunicorn, Celery workers) run on the public development SECRET_KEY.
os.environ.setdefault("GOVERNANCE_ALLOW_DEV_SECRET_KEY", "1")


def pytest_configure(config):
    from django.conf import settings

    if settings.configured:
        settings.GOVERNANCE_AUDIT_KEY = os.environ["GOVERNANCE_AUDIT_KEY"]
        settings.GOVERNANCE_AUDIT_ANCHOR_PATH = os.environ["GOVERNANCE_AUDIT_ANCHOR_PATH"]
        settings.GOVERNANCE_ALLOW_DEV_SECRET_KEY = os.environ["GOVERNANCE_ALLOW_DEV_SECRET_KEY"] == "1"


import pytest  # noqa: E402  (after the environment set-up above, which must precede any Django import)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a database file rather than shared-cache memory: background jobs (system evaluations and
    runs in the local pool) then wait on SQLite's write lock (busy timeout) instead of failing "table is locked"."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.getbasetemp() / "test_governance.sqlite3")


TRANSACTIONAL_FIXTURES = ("transactional_db", "live_server", "committed_db", "django_db_serialized_rollback")


@pytest.fixture(autouse=True)
def background_jobs_only_after_real_commits(request):
    """A test wrapped in one transaction never really commits: on-commit callbacks run (if at all) inside it,
    where a background job's own connection cannot see the test's rows and waits on its write lock. There the
    job backend is not told about requested evaluations; such tests run them inline (conftest `evaluate`).
    Tests with real commits keep the real dispatch to the local pool."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in TRANSACTIONAL_FIXTURES)
    if transactional or "django_db_setup" not in request.fixturenames and marker is None:
        yield
        return
    from governance.evaluator import _on_requested
    from governance.signals import evaluation_requested

    evaluation_requested.disconnect(_on_requested)
    try:
        yield
    finally:
        evaluation_requested.connect(_on_requested)


@pytest.fixture(autouse=True)
def evaluation_settings(request, tmp_path_factory, monkeypatch):
    """System evaluations in tests talk to loopback fake models: a per-session response cache, a dummy key."""
    monkeypatch.setenv("GOVERNANCE_LM_API_KEY", "x")
    if "settings" in request.fixturenames or "db" in request.fixturenames or request.node.get_closest_marker(
            "django_db"):
        settings = request.getfixturevalue("settings")
        settings.GOVERNANCE_LM_CACHE_PATH = str(tmp_path_factory.getbasetemp() / "eval_lm_cache.sqlite3")
