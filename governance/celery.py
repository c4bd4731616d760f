"""The Celery app. Workers: `celery -A governance worker`; scheduler: `celery -A governance beat`."""

import os

from celery import Celery

from governance.startup import refuse_development_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")

app = Celery("governance")


@app.on_after_configure.connect
def _refuse_development_secret_key(sender: Celery, **kwargs: object) -> None:
    refuse_development_secret_key()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["governance"])
app.autodiscover_tasks(["governance"], related_name="webhook_tasks")
