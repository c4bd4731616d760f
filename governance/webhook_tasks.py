"""Celery entry points for webhook deliveries (registered by governance.celery's autodiscovery)."""

from __future__ import annotations

from celery import shared_task

from governance.webhooks import MAX_ATTEMPTS, attempt, deliver_due


@shared_task(bind=True, name="governance.deliver_webhook", max_retries=MAX_ATTEMPTS - 1, acks_late=True)
def deliver_webhook(self, delivery_id: int) -> bool:
    """One attempt; a retryable failure has the broker schedule the next (countdown: no worker waits)."""
    outcome = attempt(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.delivered


@shared_task(name="governance.deliver_due_webhooks")
def deliver_due_webhooks() -> int:
    """Beat job: send every delivery that is due and not in flight (lost messages, restarts)."""
    return len(deliver_due())
