"""Webhooks: subscriptions through the API (audited), signed deliveries on workflow signals, retries, records."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.exceptions import Retry

from governance import webhooks
from governance.models import AuditEvent, WebhookDelivery, WebhookSubscription
from governance.webhook_tasks import deliver_webhook
from tests.governance.api_support import V1, error, results

pytest_plugins = ["tests.governance.api_fixtures"]

pytestmark = pytest.mark.django_db

SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    """A subscriber on 127.0.0.1 that records requests and answers with the queued statuses (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

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
def receiver(settings):
    settings.GOVERNANCE_WEBHOOK_DISPATCH = "inline"
    server = Receiver()
    yield server
    server.close()


def _subscribe(program, author, url, events=("change_request.approved", "release.created")):
    from governance.actions.webhooks import create_subscription

    return create_subscription(program, actor=author, url=url, events=list(events), secret=SECRET)


def test_create_list_delete_subscription(api, program, author):
    created = api(author).post(f"{V1}/webhooks/", {"program": "support", "url": "http://127.0.0.1:9/hook",
                                                    "events": ["change_request.opened"], "reason": "chatops"},
                               format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert len(body["secret"]) == 64 and body["events"] == ["change_request.opened"] and body["active"] is True
    listed = results(api(author).get(f"{V1}/webhooks/?program=support"))
    assert [w["id"] for w in listed] == [body["id"]] and "secret" not in listed[0]
    event = AuditEvent.objects.filter(action="webhook.created").get()
    assert event.reason == "chatops" and "secret" not in json.dumps(event.after)
    assert api(author).delete(f"{V1}/webhooks/{body['id']}/", {"reason": "gone"}, format="json").status_code == 204
    assert WebhookSubscription.objects.get(pk=body["id"]).active is False  # kept, with its deliveries
    again = api(author).delete(f"{V1}/webhooks/{body['id']}/")
    assert error(again) == {"status": 409, "code": "illegal_transition",
                            "detail": f"webhook {body['id']} is already deleted"}


def test_subscription_refusals(api, program, author, reviewer1, outsider):
    data = {"program": "support", "url": "http://127.0.0.1:9/hook", "events": ["release.created"]}
    assert error(api(reviewer1).post(f"{V1}/webhooks/", data, format="json")) == {
        "status": 403, "code": "permission_denied",
        "detail": "only the owner of support or an administrator may manage webhooks"}
    assert api(outsider).post(f"{V1}/webhooks/", data, format="json").json()["field"] == "program"
    assert api(author).post(f"{V1}/webhooks/", {**data, "events": ["everything"]},
                            format="json").json()["field"] == "events"
    assert api(author).post(f"{V1}/webhooks/", {**data, "url": "ftp://x"}, format="json").json()["field"] == "url"
    subscription = _subscribe(program, author, "http://127.0.0.1:9/hook")
    assert api(outsider).get(f"{V1}/webhooks/{subscription.pk}/").status_code == 404
    assert api(reviewer1).delete(f"{V1}/webhooks/{subscription.pk}/").status_code == 403


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
    assert headers["X-Delivery-Id"] == str(delivery.pk)
    assert headers["X-Signature"] == webhooks.sign(SECRET, body)
    assert webhooks.verify_signature(SECRET, body, headers["X-Signature"])
    document = json.loads(body)
    assert (document["event"], document["data"]["change_request"], document["data"]["status"]) == (
        "change_request.approved", cr.pk, "approved")
    assert document["data"]["actor"] == {"id": reviewer2.pk, "username": "reviewer2"}
    assert (delivery.attempts, delivery.response_status, delivery.error) == (1, 200, "")
    assert delivery.delivered_at is not None


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


def test_failed_attempts_are_recorded_and_retried_with_backoff(receiver, program, author):
    subscription = _subscribe(program, author, receiver.url)
    [delivery] = webhooks.notify(program, "release.created", {"program": "support"})
    receiver.statuses = [503, 500]
    assert webhooks.attempt(delivery) == webhooks.Outcome(delivered=False, retry_in=webhooks.backoff(1))
    with pytest.raises(Retry):  # the Celery task schedules the next attempt itself
        deliver_webhook.apply(args=[delivery], throw=True)
    row = WebhookDelivery.objects.get(pk=delivery)
    assert (row.attempts, row.response_status, row.error, row.delivered_at) == (2, 500, "HTTP 500 Internal Server Error",
                                                                               None)
    assert webhooks.attempt(delivery) == webhooks.Outcome(delivered=True, retry_in=None)
    row.refresh_from_db()
    assert (row.attempts, row.response_status, row.error) == (3, 200, "")
    assert [webhooks.backoff(n) for n in range(1, 6)] == [10.0, 30.0, 120.0, 600.0, 1800.0]
    assert len({r["headers"]["X-Delivery-Id"] for r in receiver.requests}) == 1  # same id on every retry
    assert subscription.deliveries.count() == 1


def test_client_errors_and_unreachable_subscribers(receiver, program, author, settings):
    _subscribe(program, author, receiver.url)
    [gone] = webhooks.notify(program, "release.created", {})
    receiver.statuses = [410]
    assert webhooks.attempt(gone) == webhooks.Outcome(delivered=False, retry_in=None)  # 4xx: not retried
    dead = _subscribe(program, author, "http://127.0.0.1:9/nothing-listens-here")
    delivery = WebhookDelivery.objects.create(subscription=dead, event="release.created", payload={})
    outcome = webhooks.attempt(delivery.pk)
    delivery.refresh_from_db()
    assert outcome.retry_in == 10.0 and delivery.response_status is None and "URLError" in delivery.error
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        outcome = webhooks.attempt(delivery.pk)
    delivery.refresh_from_db()
    assert outcome == webhooks.Outcome(delivered=False, retry_in=None) and delivery.attempts == webhooks.MAX_ATTEMPTS


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
