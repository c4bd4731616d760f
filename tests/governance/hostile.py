"""The hostile-input corpus: every input that once made the API answer 5xx, and more of the same families.

Shared by tests/governance/test_hostile_input.py (SQLite) and tests/pg/test_pg_hostile_input.py (PostgreSQL).
Requests go over real HTTP to a live server (`http.client`, so bodies and headers are sent byte for byte);
`replay` returns one line per response that is a 5xx or, under /api/, not a JSON error body.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from rest_framework.authtoken.models import Token

from governance.actions.datasets import import_dataset
from governance.actions.programs import create_program
from governance.actions.reviews import open_change_request
from governance.actions.roles import create_user_with_roles
from governance.actions.versions import create_version, initial_payload
from tests.governance.export_helpers import PASSWORD, SPEC

V1 = "/api/v1"
LISTS = ("programs", "datasets", "versions", "runs", "trials", "evaluations", "change-requests", "reviews",
         "releases", "labels", "exports", "audit-events", "webhooks", "webhook-deliveries")
DATETIME_LISTS = ("audit-events", "releases", "runs")
BAD_DATETIMES = ("2026-01-01T00:00:00+20:45", "2026-01-01T00:00:00-23:59", "9999-12-31T23:59:59-05:00",
                 "0001-01-01T00:00:00+14:00", "2026-13-45T99:99", "2026-01-01T00:00:00+99:00")
HUGE = "99999999999999999999"
# The system evaluates every change request; here against a model nobody serves, so it fails fast and quietly.
DEAD_LM = {"model": "text-completion-openai/nobody", "api_base": "http://127.0.0.1:9/v1", "num_retries": 0}


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expect: int | None = None  # an exact status, when the case has one right answer


@dataclass
class World:
    author: Any
    reviewer: Any
    token: str  # the program owner's API token
    reviewer_token: str
    change_request: int
    version: int
    content_hash: str
    payload: dict[str, Any]  # a valid version payload of the program

    def version_body(self, instructions: str) -> bytes:
        payload = json.loads(json.dumps(self.payload))
        payload["program"]["predictors"][0]["signature"]["instructions"] = instructions
        return _json(json.dumps({"program": "support", "payload": payload}))


def seed_world() -> World:
    """A program with a test dataset, a change request in review and API tokens, through the actions."""
    author = create_user_with_roles(actor=None, username="author", password=PASSWORD, roles=["author"],
                                    first_name="Alice", last_name="Author")
    reviewer = create_user_with_roles(actor=None, username="reviewer", password=PASSWORD, roles=["reviewer"],
                                      first_name="Ada", last_name="Reviewer")
    program = create_program(actor=author, slug="support", name="Support", spec=SPEC, lm_config=DEAD_LM,
                             members=[reviewer])
    import_dataset(program, actor=author, split="test", name="test", rows=[
        {"ticket": "I was charged twice", "category": "billing"},
        {"ticket": "Where is my parcel?", "category": "shipping"}])
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["signature"]["instructions"] = "Route the ticket to exactly one team."
    version = create_version(program, actor=author, payload=payload)
    cr = open_change_request(version, actor=author, title="Review the new instructions")
    return World(author=author, reviewer=reviewer, token=Token.objects.create(user=author).key,
                 reviewer_token=Token.objects.create(user=reviewer).key, change_request=cr.pk,
                 version=version.pk, content_hash=version.content_hash, payload=initial_payload(program))


def _json(text: str) -> bytes:
    return text.encode("utf-8")


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _q(**params: str) -> str:
    return urllib.parse.urlencode(params)


def corpus(world: World) -> list[Case]:
    """Every family of hostile input, against every endpoint it applies to."""
    return [*_deep_json(world), *_bad_text(world), *_integers(), *_nul(), *_datetimes(), *_headers(world),
            *_bodies()]


def _deep_json(world: World) -> list[Case]:
    cases = []
    for depth in (40, 1000, 5000, 100_000):
        cases.append(Case(f"array depth {depth}", "POST", f"{V1}/versions/", _json(nested(depth)), expect=400))
        payload = '{"program": "support", "payload": ' + nested(depth, '{"a": 1}') + "}"
        cases.append(Case(f"payload depth {depth}", "POST", f"{V1}/versions/", _json(payload), expect=400))
    objects = '{"a": ' * 1000 + "1" + "}" * 1000
    cases.append(Case("object depth 1000", "POST", f"{V1}/change-requests/", _json(objects), expect=400))
    cases.append(Case("approval body depth 1000", "POST", f"{V1}/change-requests/{world.change_request}/approve/",
                      _json('{"password": ' + nested(1000) + "}"), expect=400))
    return cases


def _bad_text(world: World) -> list[Case]:
    surrogate = '"\\ud800"'
    bodies = {
        "version program surrogate": (f"{V1}/versions/", '{"program": ' + surrogate + ', "payload": {}}'),
        "change request title surrogate": (f"{V1}/change-requests/",
                                           '{"version": ' + str(world.version) + ', "title": ' + surrogate + "}"),
        "webhook url surrogate": (f"{V1}/webhooks/", '{"program": "support", "url": "http://x/' + "\\udfff"
                                  + '", "events": ["release.created"]}'),
        "webhook event surrogate": (f"{V1}/webhooks/", '{"program": "support", "url": "https://example.com/h", '
                                    '"events": [' + surrogate + "]}"),
        "key surrogate": (f"{V1}/versions/", '{' + surrogate + ': 1}'),
        "approve reason surrogate": (f"{V1}/change-requests/{world.change_request}/approve/",
                                     '{"password": "x", "reason": ' + surrogate + "}"),
        "program slug surrogate": (f"{V1}/programs/", '{"slug": ' + surrogate + ', "name": "x", "spec": {}}'),
        "NaN": (f"{V1}/runs/", '{"program": "support", "seed": NaN}'),
        "infinite float": (f"{V1}/versions/", '{"program": "support", "payload": {"x": 1e999}, "scores": '
                           '{"val": 1e999}}'),
        "huge integer": (f"{V1}/runs/", '{"program": "support", "seed": ' + "9" * 5000 + "}"),
    }
    cases = [Case(name, "POST", path, _json(body), expect=400) for name, (path, body) in bodies.items()]
    cases.append(Case("invalid UTF-8 body", "POST", f"{V1}/versions/", b'{"program": "\xff\xfe"}', expect=400))
    cases.append(Case("invalid UTF-8 query", "GET", f"{V1}/versions/?status=%ED%A0%80"))
    cases.append(Case("surrogate in ordering", "GET", f"{V1}/versions/?ordering=%ED%A0%80"))
    return cases


def _integers() -> list[Case]:
    cases = []
    for name in LISTS:
        for param in ("limit", "offset"):
            for value in (HUGE, "-1", "1e10", "0x10"):
                cases.append(Case(f"{name} {param}={value}", "GET", f"{V1}/{name}/?{param}={value}"))
    for param in ("number", "run", "version"):
        cases.append(Case(f"versions {param} huge", "GET", f"{V1}/versions/?{param}={HUGE}"))
    cases += [
        Case("trial score huge", "GET", f"{V1}/trials/?score_min=1e999&score_max=-1e999"),
        Case("version id huge", "GET", f"{V1}/versions/{HUGE}/", expect=404),
        Case("change request id huge", "POST", f"{V1}/change-requests/{HUGE}/approve/", _json("{}")),
        Case("run seed huge", "POST", f"{V1}/runs/", _json('{"program": "support", "seed": ' + HUGE + "}"),
             expect=400),
        Case("evaluation run huge", "GET", f"{V1}/evaluations/?run={HUGE}&dataset={HUGE}"),
    ]
    return cases


def _nul() -> list[Case]:
    cases = [Case(f"{name} program NUL", "GET", f"{V1}/{name}/?program=sup%00port", expect=400) for name in LISTS]
    cases += [
        Case("program path NUL", "GET", f"{V1}/programs/sup%00port/"),
        Case("bundle path NUL", "GET", f"{V1}/programs/support/releases/prod%00uction/bundle"),
        Case("audit action NUL", "GET", f"{V1}/audit-events/?action=review.%00*", expect=400),
        Case("version body program NUL", "POST", f"{V1}/versions/",
             _json('{"program": "sup\\u0000port", "payload": {}}'), expect=400),
        Case("webhook body program NUL", "POST", f"{V1}/webhooks/",
             _json('{"program": "a\\u0000", "url": "https://example.com/h", "events": ["release.created"]}'),
             expect=400),
        Case("key NUL", "POST", f"{V1}/versions/", _json('{"a\\u0000": 1}'), expect=400),
        Case("portal program NUL", "GET", "/programs/sup%00port/"),
        Case("form webhook program NUL", "POST", f"{V1}/webhooks/", b"program=a%00b&url=https%3A%2F%2Fx.example&"
             b"events=release.created", {"Content-Type": "application/x-www-form-urlencoded"}, expect=400),
        Case("multipart program NUL", "POST", f"{V1}/programs/", _multipart(slug="a\x00b", name="x",
                                                                         review_policy="p\x00"),
             {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, expect=400),
    ]
    return cases


BOUNDARY = "hostile-boundary-0"


def _multipart(**fields: str) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             for name, value in fields.items()]
    return ("".join(parts) + f"--{BOUNDARY}--\r\n").encode("utf-8")


def _datetimes() -> list[Case]:
    cases = []
    for name in DATETIME_LISTS:
        for value in BAD_DATETIMES:
            for bound in ("after", "before"):
                query = _q(**{f"created_at_{bound}": value})
                cases.append(Case(f"{name} created_at_{bound}={value}", "GET", f"{V1}/{name}/?{query}"))
    for value in BAD_DATETIMES:
        query = _q(created_at_after=value, format="csv")
        cases.append(Case(f"audit csv created_at_after={value}", "GET", f"{V1}/audit-events/?{query}"))
    return cases


def _headers(world: World) -> list[Case]:
    approve = f"{V1}/change-requests/{world.change_request}/approve/"
    wrong_password = _json(json.dumps({"password": "not-" + PASSWORD, "content_hash": world.content_hash}))
    return [
        Case("forwarded for not-an-ip", "POST", f"{V1}/versions/", world.version_body("Junk proxy 1."),
             {"X-Forwarded-For": "not-an-ip"}, expect=201),
        Case("forwarded for chain of junk", "POST", f"{V1}/versions/", world.version_body("Junk proxy 2."),
             {"X-Forwarded-For": "1.2.3.4, <script>, ::1"}, expect=201),
        Case("forwarded for spoofed", "POST", f"{V1}/versions/", world.version_body("Spoofed client."),
             {"X-Forwarded-For": "203.0.113.9"}, expect=201),
        Case("wrong password with junk forwarded for", "POST", approve, wrong_password,
             {"X-Forwarded-For": "not-an-ip", "Authorization": f"Token {world.reviewer_token}"}, expect=403),
        Case("request id 200 chars", "GET", f"{V1}/programs/", headers={"X-Request-ID": "r" * 200}, expect=200),
        Case("request id with NUL and unicode", "GET", f"{V1}/programs/",
             headers={"X-Request-ID": "a\x00b-\u00e9"}, expect=200),
        Case("audited write with long request id", "POST", f"{V1}/versions/", world.version_body("Long id."),
             {"X-Request-ID": "x" * 5000}, expect=201),
    ]


def _bodies() -> list[Case]:
    big = b'{"program": "support", "payload": {"x": "' + b"a" * (10 * 1024 * 1024) + b'"}}'
    return [
        Case("10 MB JSON body", "POST", f"{V1}/versions/", big, expect=413),
        Case("10 MB multipart dataset", "POST", f"{V1}/datasets/", big,
             {"Content-Type": "multipart/form-data; boundary=xyz"}, expect=413),
        Case("empty JSON body", "POST", f"{V1}/versions/", b"", expect=400),
        Case("JSON null", "POST", f"{V1}/versions/", b"null", expect=400),
        Case("JSON list", "POST", f"{V1}/change-requests/", b"[1, 2]", expect=400),
        Case("truncated JSON", "POST", f"{V1}/versions/", b'{"program": ', expect=400),
    ]


# --- replay ---------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


def send(base_url: str, case: Case, token: str) -> Answer:
    parsed = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", **case.headers}
    try:
        connection.putrequest(case.method, case.path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value.encode("latin-1", "replace"))
        if case.body is not None:
            connection.putheader("Content-Length", str(len(case.body)))
        connection.endheaders()
        if case.body:
            try:
                connection.send(case.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (413) before reading everything
        response = connection.getresponse()
        return Answer(response.status, response.getheader("Content-Type", ""), response.read(),
                      {k.lower(): v for k, v in response.getheaders()})
    finally:
        connection.close()


def problem(case: Case, answer: Answer) -> str | None:
    """Why the answer is wrong, or None."""
    if answer.status >= 500:
        return f"{case.name}: HTTP {answer.status}: {answer.body[:300]!r}"
    if case.expect is not None and answer.status != case.expect:
        return f"{case.name}: expected HTTP {case.expect}, got {answer.status}: {answer.body[:300]!r}"
    if case.path.startswith("/api/") and answer.status >= 400:
        if not answer.content_type.startswith("application/json"):
            return f"{case.name}: HTTP {answer.status} with {answer.content_type!r}, not JSON: {answer.body[:200]!r}"
        document: Any = json.loads(answer.body)
        if not (isinstance(document, dict) and document.get("code") and "detail" in document):
            return f"{case.name}: error body without code and detail: {answer.body[:200]!r}"
    return None


def replay(base_url: str, world: World) -> tuple[int, list[str]]:
    """Send every case; return (cases sent, problems)."""
    cases = corpus(world)
    problems = [p for case in cases if (p := problem(case, send(base_url, case, world.token)))]
    return len(cases), problems
