"""The Celery app. Workers: `celery -A governance worker`; scheduler: `celery -A governance beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("governance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["governance"])
app.autodiscover_tasks(["governance"], related_name="webhook_tasks")
