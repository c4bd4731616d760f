"""Celery entry point for webhook deliveries (registered by governance.celery's autodiscovery)."""

from __future__ import annotations

from celery import shared_task

from governance.webhooks import MAX_ATTEMPTS, attempt


@shared_task(bind=True, name="governance.deliver_webhook", max_retries=MAX_ATTEMPTS - 1, acks_late=True)
def deliver_webhook(self, delivery_id: int) -> bool:
    """One attempt; a retryable failure schedules the next with the backoff in governance.webhooks."""
    outcome = attempt(delivery_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.delivered
