"""Webhooks: subscriptions through the API (audited), Standard Webhooks-signed deliveries on workflow signals,
refused internal destinations (SSRF), replay protection, scheduled (never slept) retries, records."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.exceptions import Retry
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from governance import webhooks
from governance.models import AuditEvent, WebhookDelivery, WebhookSubscription
from governance.webhook_tasks import deliver_webhook
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A subscriber on 127.0.0.1 that records requests and answers with the queued statuses (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "at": time.monotonic()})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal_receivers_allowed(settings):
    """Tests deliver to 127.0.0.1 over http: both are refused unless the deployment allows them."""
    settings.GOVERNANCE_WEBHOOK_ALLOW_PRIVATE = True
    settings.GOVERNANCE_WEBHOOK_ALLOW_HTTP = True


@pytest.fixture
def receiver(settings, internal_receivers_allowed):
    settings.GOVERNANCE_WEBHOOK_DISPATCH = "inline"
    server = Receiver()
    yield server
    server.close()


def _subscribe(program, author, url, events=("change_request.approved", "release.created")):
    from governance.actions.webhooks import create_subscription

    return create_subscription(program, actor=author, url=url, events=list(events), secret=SECRET)


def _make_due(delivery_id: int) -> None:
    """Time passes: the delivery's next attempt is due now."""
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())


def test_create_list_delete_subscription(api, program, author, internal_receivers_allowed):
    created = api(author).post(f"{V1}/webhooks/", {"program": "support", "url": "http://127.0.0.1:9/hook",
                                                    "events": ["change_request.opened"], "reason": "chatops"},
                               format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) == 50 and webhooks.secret_problem(
        body["secret"]) is None
    assert body["events"] == ["change_request.opened"] and body["active"] is True
    listed = results(api(author).get(f"{V1}/webhooks/?program=support"))
    assert [w["id"] for w in listed] == [body["id"]] and "secret" not in listed[0]
    event = AuditEvent.objects.filter(action="webhook.created").get()
    assert event.reason == "chatops" and "secret" not in json.dumps(event.after)
    assert api(author).delete(f"{V1}/webhooks/{body['id']}/", {"reason": "gone"}, format="json").status_code == 204
    assert WebhookSubscription.objects.get(pk=body["id"]).active is False  # kept, with its deliveries
    again = api(author).delete(f"{V1}/webhooks/{body['id']}/")
    assert error(again) == {"status": 409, "code": "illegal_transition",
                            "detail": f"webhook {body['id']} is already deleted"}


def test_subscription_refusals(api, program, author, reviewer1, outsider, internal_receivers_allowed):
    data = {"program": "support", "url": "http://127.0.0.1:9/hook", "events": ["release.created"]}
    assert error(api(reviewer1).post(f"{V1}/webhooks/", data, format="json")) == {
        "status": 403, "code": "permission_denied",
        "detail": "only the owner of support or an administrator may manage webhooks"}
    assert api(outsider).post(f"{V1}/webhooks/", data, format="json").json()["field"] == "program"
    assert api(author).post(f"{V1}/webhooks/", {**data, "events": ["everything"]},
                            format="json").json()["field"] == "events"
    assert api(author).post(f"{V1}/webhooks/", {**data, "url": "ftp://x"}, format="json").json()["field"] == "url"
    assert api(author).post(f"{V1}/webhooks/", {**data, "secret": "not base64 at all!!"},
                            format="json").json()["field"] == "secret"
    subscription = _subscribe(program, author, "http://127.0.0.1:9/hook")
    assert api(outsider).get(f"{V1}/webhooks/{subscription.pk}/").status_code == 404
    assert api(reviewer1).delete(f"{V1}/webhooks/{subscription.pk}/").status_code == 403


@pytest.mark.parametrize(("url", "kind"), [
    ("https://127.0.0.1:8000/hook", "loopback"),
    ("https://localhost:6379/", "loopback"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("https://10.0.0.5/hook", "private"),
    ("https://192.168.1.1/hook", "private"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://100.64.0.1/hook", "non-public"),
])
def test_internal_destinations_are_refused_at_subscription(api, program, author, url, kind):
    response = api(author).post(f"{V1}/webhooks/", {"program": "support", "url": url, "events": ["release.created"]},
                                format="json")
    body = error(response)
    assert (body["status"], body["field"]) == (400, "url") and f"a {kind} address" in body["detail"]
    assert not WebhookSubscription.objects.exists()


def test_plain_http_needs_debug_or_the_setting(api, program, author, settings):
    settings.DEBUG, settings.GOVERNANCE_WEBHOOK_ALLOW_HTTP, settings.GOVERNANCE_WEBHOOK_ALLOW_PRIVATE = (
        False, False, True)
    response = api(author).post(f"{V1}/webhooks/", {"program": "support", "url": "http://127.0.0.1:9/hook",
                                                    "events": ["release.created"]}, format="json")
    assert error(response) == {"status": 400, "code": "invalid", "field": "url",
                               "detail": "url must use https (plain http needs GOVERNANCE_WEBHOOK_ALLOW_HTTP)",
                               "errors": {"url": ["url must use https (plain http needs "
                                                  "GOVERNANCE_WEBHOOK_ALLOW_HTTP)"]}}


def test_destination_is_checked_again_at_delivery(receiver, program, author, settings):
    """A host that was acceptable when subscribing but resolves inside the network now (DNS rebinding, or the
    allowance withdrawn) gets nothing: the address is checked on every attempt, and the attempt is final."""
    _subscribe(program, author, receiver.url.replace("127.0.0.1", "localhost"))
    settings.GOVERNANCE_WEBHOOK_ALLOW_PRIVATE = False
    [delivery] = webhooks.notify(program, "release.created", {"program": "support"})
    assert webhooks.attempt(delivery) == webhooks.Outcome(delivered=False, retry_in=None)
    row = WebhookDelivery.objects.get(pk=delivery)
    assert receiver.requests == [] and row.attempts == 1 and row.next_attempt_at is None
    assert row.error.startswith("refused: url host localhost resolves to 127.0.0.1, a loopback address")


def test_redirects_are_not_followed(receiver, program, author):
    _subscribe(program, author, receiver.url)
    [delivery] = webhooks.notify(program, "release.created", {})
    receiver.statuses = [302]
    assert webhooks.attempt(delivery) == webhooks.Outcome(delivered=False, retry_in=None)
    assert len(receiver.requests) == 1 and WebhookDelivery.objects.get(pk=delivery).response_status == 302


def test_approval_sends_a_signed_delivery_on_commit(receiver, program, author, make_cr, approve, reviewer1,
                                                    reviewer2, django_capture_on_commit_callbacks):
    _subscribe(program, author, receiver.url)
    cr = make_cr()
    with django_capture_on_commit_callbacks(execute=True):
        approve(cr, reviewer1)
    assert receiver.requests == []  # one approval of two: nothing approved yet
    with django_capture_on_commit_callbacks(execute=True):
        approve(cr, reviewer2)
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    delivery = WebhookDelivery.objects.get()
    assert headers["X-Event"] == "change_request.approved"
    assert headers["webhook-id"] == f"gov-{delivery.pk}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    document = webhooks.verify_delivery(SECRET, headers, body)
    assert Webhook(SECRET).verify(body, headers) == document  # the reference implementation agrees
    assert (document["event"], document["data"]["change_request"], document["data"]["status"]) == (
        "change_request.approved", cr.pk, "approved")
    assert document["data"]["actor"] == {"id": reviewer2.pk, "username": "reviewer2"}
    assert (delivery.attempts, delivery.response_status, delivery.error) == (1, 200, "")
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


def test_receiver_helper_refuses_replays_forgeries_and_stale_timestamps():
    body = b'{"event":"release.created"}'
    headers = webhooks.signed_headers(SECRET, "gov-7", body, now=1_000_000)
    assert webhooks.verify_delivery(SECRET, headers, body, now=1_000_100) == {"event": "release.created"}
    with pytest.raises(webhooks.WebhookVerificationError, match="301 s away from now; the replay window is 300 s"):
        webhooks.verify_delivery(SECRET, headers, body, now=1_000_301)
    with pytest.raises(webhooks.WebhookVerificationError, match="-301 s away"):  # from the future
        webhooks.verify_delivery(SECRET, headers, body, now=999_699)
    with pytest.raises(webhooks.WebhookVerificationError, match="no matching signature"):
        webhooks.verify_delivery(SECRET, headers, body.replace(b"created", b"deleted"), now=1_000_000)
    restamped = {**headers, "webhook-timestamp": "1000200"}  # an old capture with a fresh timestamp
    with pytest.raises(webhooks.WebhookVerificationError, match="no matching signature"):
        webhooks.verify_delivery(SECRET, restamped, body, now=1_000_200)
    seen: set[str] = set()
    webhooks.verify_delivery(SECRET, headers, body, now=1_000_000, seen_ids=seen)
    with pytest.raises(webhooks.WebhookVerificationError, match="gov-7 was delivered before"):
        webhooks.verify_delivery(SECRET, headers, body, now=1_000_001, seen_ids=seen)
    with pytest.raises(webhooks.WebhookVerificationError, match="missing"):
        webhooks.verify_delivery(SECRET, {"webhook-id": "gov-7"}, body)


def test_release_and_rollback_events_reach_only_interested_subscribers(receiver, program, author, make_approved,
                                                                       releaser, django_capture_on_commit_callbacks):
    from governance.actions import release_version, rollback

    _subscribe(program, author, receiver.url, events=["release.rolled_back"])
    first, second = make_approved(), make_approved()
    with django_capture_on_commit_callbacks(execute=True):
        release_version(first, actor=releaser, reason="one")
        release_version(second, actor=releaser, reason="two")
    assert receiver.requests == []
    with django_capture_on_commit_callbacks(execute=True):
        rollback(program, actor=releaser, reason="bad")
    [request] = receiver.requests
    data = json.loads(request["body"])["data"]
    assert (request["headers"]["X-Event"], data["version"], data["previous_version"], data["reason"]) == (
        "release.rolled_back", first.number, second.number, "bad")


def test_failed_attempts_are_recorded_and_scheduled_with_backoff(receiver, program, author):
    subscription = _subscribe(program, author, receiver.url)
    [delivery] = webhooks.notify(program, "release.created", {"program": "support"})
    receiver.statuses = [503, 500]
    before = timezone.now()
    assert webhooks.attempt(delivery) == webhooks.Outcome(delivered=False, retry_in=webhooks.backoff(1))
    row = WebhookDelivery.objects.get(pk=delivery)
    assert before + dt.timedelta(seconds=9) < row.next_attempt_at < timezone.now() + dt.timedelta(seconds=11)
    # Not due yet: a second sender (duplicate task, the due job) does nothing.
    assert webhooks.attempt(delivery) == webhooks.Outcome(delivered=False, retry_in=None)
    assert webhooks.deliver_due() == [] and WebhookDelivery.objects.get(pk=delivery).attempts == 1
    _make_due(delivery)
    with pytest.raises(Retry):  # the Celery task has the broker schedule the next attempt (no worker waits)
        deliver_webhook.apply(args=[delivery], throw=True)
    row.refresh_from_db()
    assert (row.attempts, row.response_status, row.error, row.delivered_at) == (2, 500, "HTTP 500", None)
    _make_due(delivery)
    assert webhooks.deliver_due() == [delivery]  # the beat job's sweep sends what is due
    row.refresh_from_db()
    assert (row.attempts, row.response_status, row.error, row.next_attempt_at) == (3, 200, "", None)
    assert [webhooks.backoff(n) for n in range(1, 6)] == [10.0, 30.0, 120.0, 600.0, 1800.0]
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1  # same id on every retry
    for request in receiver.requests:  # each attempt signed with its own timestamp
        webhooks.verify_delivery(SECRET, request["headers"], request["body"])
    assert subscription.deliveries.count() == 1


def test_client_errors_and_unreachable_subscribers(receiver, program, author, settings):
    _subscribe(program, author, receiver.url)
    [gone] = webhooks.notify(program, "release.created", {})
    receiver.statuses = [410]
    assert webhooks.attempt(gone) == webhooks.Outcome(delivered=False, retry_in=None)  # 4xx: not retried
    dead = _subscribe(program, author, "http://127.0.0.1:9/nothing-listens-here")
    [delivery] = [d for d in webhooks.notify(program, "release.created", {}) if
                  WebhookDelivery.objects.get(pk=d).subscription_id == dead.pk]
    outcome = webhooks.attempt(delivery)
    row = WebhookDelivery.objects.get(pk=delivery)
    assert outcome.retry_in == 10.0 and row.response_status is None and "ConnectionRefusedError" in row.error
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        _make_due(delivery)
        outcome = webhooks.attempt(delivery)
    row.refresh_from_db()
    assert outcome == webhooks.Outcome(delivered=False, retry_in=None) and row.attempts == webhooks.MAX_ATTEMPTS
    assert row.next_attempt_at is None


def test_dead_subscribers_do_not_hold_up_a_healthy_one(program, author, settings, internal_receivers_allowed,
                                                      committed_db):
    """The in-process sender with two dead subscribers ahead of a healthy one: the healthy one is served at
    once, the dead ones' retries are scheduled (next_attempt_at) and made by the scheduler, no thread sleeps."""
    settings.GOVERNANCE_WEBHOOK_DISPATCH = "thread"
    settings.GOVERNANCE_WEBHOOK_BACKOFF = (1.5, 1.5, 1.5, 1.5, 1.5)
    healthy = Receiver()
    try:
        for port in (9, 7):  # nothing listens on the discard and echo ports here
            _subscribe(program, author, f"http://127.0.0.1:{port}/dead")
        _subscribe(program, author, healthy.url)
        started = time.monotonic()
        ids = webhooks.notify(program, "release.created", {"n": 1})
        for delivery_id in ids:
            webhooks.send(delivery_id)
        assert healthy.arrived.wait(5), "the healthy subscriber was starved"
        assert healthy.requests[0]["at"] - started < 3
        dead = WebhookDelivery.objects.exclude(subscription__url=healthy.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(d.attempts < 2 for d in dead.all()):
            time.sleep(0.2)
        assert sorted(d.attempts for d in dead.all()) == [2, 2]  # retried by the scheduler, not by a sleeper
        assert all(d.next_attempt_at is not None and d.delivered_at is None for d in dead.all())
        assert WebhookDelivery.objects.get(subscription__url=healthy.url).delivered_at is not None
    finally:
        WebhookDelivery.objects.update(next_attempt_at=None)  # nothing left for the scheduler after the test
        healthy.close()


def test_deliveries_endpoint(api, receiver, program, author, outsider, django_assert_max_num_queries):
    _subscribe(program, author, receiver.url)
    for _ in range(5):
        for delivery in webhooks.notify(program, "release.created", {"n": 1}):
            webhooks.attempt(delivery)
    client = api(author)
    with django_assert_max_num_queries(3):
        listed = results(client.get(f"{V1}/webhook-deliveries/?program=support&delivered=true"))
    assert len(listed) == 5 and {d["response_status"] for d in listed} == {200}
    assert results(api(outsider).get(f"{V1}/webhook-deliveries/")) == []
