"""The OpenAPI schema: valid and warning-free (drf-spectacular), and the live API conforms to it (schemathesis).

The schemathesis run is in-process (WSGI, against the Django app and the test database), bounded (a few
examples per operation, no deadline), authenticated with an administrator's API token over a database with
a program, data, versions in every state, a release, a run and a webhook. It fails on any 5xx, any response
that does not match the schema (status code, content type, headers, body).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytest_plugins = ["tests.governance.api_fixtures"]


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
MAX_EXAMPLES = 5


def test_schema_is_valid_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/v1/programs/{slug}/releases/{label}/bundle:", "/api/v1/change-requests/{id}/approve/:",
                 "/api/v1/audit-events/:", "/api/v1/users/me/token/:"):
        assert path in text


def test_swagger_ui_is_served_without_a_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert client.get("/api/schema/").status_code == 200


@pytest.fixture
def seeded(db, settings, signing, users, program, make_approved, make_cr, make_version, releaser, author):
    """Rows of every kind, through the actions, so generated requests meet real objects."""
    settings.GOVERNANCE_WEBHOOK_ALLOW_HTTP = True  # the subscription below points at a local receiver
    settings.GOVERNANCE_WEBHOOK_ALLOW_PRIVATE = True
    from governance.actions import import_dataset, release_version
    from governance.actions.runs import start_run
    from governance.actions.webhooks import create_subscription

    import_dataset(program, actor=author, split="train", name="train",
                   rows=[{"ticket": "charged twice", "category": "billing"}])
    first = make_approved()
    release_version(first, actor=releaser, reason="go live")
    make_cr()
    make_version()
    start_run(program, actor=author, enqueue=False)
    create_subscription(program, actor=author, url="http://127.0.0.1:9/hook", events=["release.created"])
    return users


@pytest.fixture
def api_schema(seeded, settings):
    """The schema, exercised through the WSGI app inside the test's transaction. Like Django's test client, it
    must not close the connection at the end of each request (the test database is a file, which a close ends)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    settings.GOVERNANCE_WEBHOOK_DISPATCH = "inline"
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_api_conforms_to_its_schema(api_schema, seeded):
    """Every operation, with generated valid and invalid input: no 5xx, nothing outside the schema.

    Driven through Hypothesis directly (schemathesis' pytest plugin does not run under pytest 9 yet).
    """
    token = Token.objects.get_or_create(user=seeded["admin"])[0].key
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def exercise(case):
                case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)

            try:
                exercise()
            except Unsatisfiable:
                pass  # nothing to make invalid (e.g. no parameters and no body)
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' failures (FailureGroup is a group)
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    assert operations >= 50
    assert not failures, "\n\n".join(failures)
