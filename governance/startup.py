"""Checks a server process makes before it serves anything (the WSGI app and the Celery app call them)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


def refuse_development_secret_key() -> None:
    """A production process never runs on the public development SECRET_KEY (anyone could forge sessions)."""
    if settings.SECRET_KEY != settings.DEV_SECRET_KEY:
        return
    if settings.DEBUG or settings.GOVERNANCE_ALLOW_DEV_SECRET_KEY:
        logger.warning("running with the public development SECRET_KEY: for the demo and tests only")
        return
    raise ImproperlyConfigured("SECRET_KEY is not set: the public development key is refused outside the demo and "
                               "the tests (set SECRET_KEY, or GOVERNANCE_ALLOW_DEV_SECRET_KEY=1 for a local demo)")
