"""The production profile's parts in one process: probes, Prometheus metrics, JSON logs and the deploy checks.

The whole topology (gunicorn, Celery worker and beat, PostgreSQL, Redis) is exercised by tests/test_topology.py;
these tests pin each part's behaviour, against the real Redis and RabbitMQ of the machine for the broker check.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance.actions import create_program
from governance.models import Evaluation, OptimizationRun
from optimizer.bundle import generate_private_key, private_key_pem
from tests.governance.conftest import INLINE_SPEC

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/15"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def signing_key(settings, tmp_path):
    key = tmp_path / "signing_key.pem"
    key.write_bytes(private_key_pem(generate_private_key()))
    key.chmod(0o600)
    settings.GOVERNANCE_SIGNING_KEY_PATH = key
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    return key


def test_liveness_touches_nothing(client):
    response = client.get("/healthz")  # no database access is allowed in this test: a query would raise
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_when_database_keys_and_no_broker(client, settings, signing_key):
    settings.CELERY_BROKER_URL = ""
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "signing_key", "audit_key"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["signing_key"]["detail"].startswith("ed25519 ")


@pytest.mark.django_db
@pytest.mark.services
@pytest.mark.parametrize("broker", [REDIS_URL, RABBITMQ_URL], ids=["redis", "rabbitmq"])
def test_ready_checks_the_real_broker(client, settings, signing_key, broker):
    settings.CELERY_BROKER_URL = broker
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["broker"]["ok"]


@pytest.mark.django_db
def test_not_ready_names_the_failed_checks_without_paths(client, settings, tmp_path):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.GOVERNANCE_SIGNING_KEY_PATH = tmp_path / "missing.pem"
    settings.GOVERNANCE_SIGNING_KEY_PEM = ""
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert not checks["broker"]["ok"] and not checks["signing_key"]["ok"]
    assert checks["database"]["ok"] and checks["audit_key"]["ok"]
    assert str(tmp_path) not in response.content.decode()


@pytest.mark.django_db
def test_not_ready_without_an_audit_key(client, settings, signing_key, tmp_path):
    settings.GOVERNANCE_AUDIT_KEY = ""
    settings.GOVERNANCE_AUDIT_KEY_PATH = tmp_path / "no_audit_key"
    settings.GOVERNANCE_AUDIT_KEY_AUTOCREATE = False
    response = client.get("/readyz")
    assert response.status_code == 503 and not response.json()["checks"]["audit_key"]["ok"]


@pytest.mark.django_db
def test_metrics_show_requests_and_job_queues(client, make_program_with_jobs):
    client.get("/healthz")
    text = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in text
    assert 'governance_jobs{kind="run",status="queued"} 1.0' in text
    assert 'governance_jobs{kind="evaluation",status="queued"} 0.0' in text
    assert 'governance_lm_calls_total{kind="run"} 12.0' in text
    assert 'governance_lm_tokens_total{kind="run",type="prompt"} 3400.0' in text


@pytest.mark.django_db
def test_a_scrape_costs_the_same_queries_at_any_size(client, make_program_with_jobs):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/metrics").status_code == 200
        return len(captured)

    before = queries()
    for _ in range(5):
        make_program_with_jobs()
    assert queries() == before


@pytest.mark.django_db
def test_metrics_token(client, settings):
    settings.GOVERNANCE_METRICS_TOKEN = "s3cret-scrape-token"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200


@pytest.fixture
def make_program_with_jobs(author):
    """A program with one queued run that made 12 calls (the metrics read what runs and evaluations stored)."""
    made: list[OptimizationRun] = []

    def make() -> OptimizationRun:
        program = create_program(actor=author, slug=f"metrics-{len(made)}", name="Metrics", spec=INLINE_SPEC)
        made.append(OptimizationRun.objects.create(program=program, started_by=author, calls=12, prompt_tokens=3400))
        return made[-1]

    make()
    assert not Evaluation.objects.exists()
    return make


def _manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "GOVERNANCE_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(50), "DEBUG": "0", "ALLOWED_HOSTS": "governance.example.com",
    "GOVERNANCE_HTTPS": "1", "SECURE_HSTS_PRELOAD": "1", "GOVERNANCE_STATIC_MANIFEST": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
}


def test_deploy_checks_are_clean_with_production_settings(tmp_path):
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"],
                     {**PRODUCTION_ENV, "GOVERNANCE_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deploy_checks_warn_without_https(tmp_path):
    env = {**PRODUCTION_ENV, "GOVERNANCE_HTTPS": "0", "GOVERNANCE_VAR_DIR": str(tmp_path)}
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "SESSION_COOKIE_SECURE" in result.stderr and "SECURE_HSTS_SECONDS" in result.stderr


def test_json_logs_carry_the_request_id(tmp_path):
    code = "import logging; logging.getLogger('governance.demo').warning('hello %s', 'world')"
    result = _manage(["shell", "-c", code], {**PRODUCTION_ENV, "LOG_FORMAT": "json",
                                             "GOVERNANCE_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello world" and line["level"] == "WARNING"
    assert line["logger"] == "governance.demo" and line["request_id"] == "-" and "time" in line
