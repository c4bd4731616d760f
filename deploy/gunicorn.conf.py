"""gunicorn settings for the web nodes (scripts/topology.sh, docs/operations.md "Production topology").

Values come from the environment so one file serves every node: WEB_BIND (default 127.0.0.1:8000),
WEB_WORKERS (default 2 x cores + 1), WEB_TIMEOUT (seconds, default 60: a bundle fetch or a page is far below it;
runs and evaluations execute in Celery workers, never in a web request).
"""

import multiprocessing
import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", str(2 * multiprocessing.cpu_count() + 1)))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
max_requests = 2000  # recycle workers now and then: bounded memory over months of uptime
max_requests_jitter = 200
forwarded_allow_ips = os.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1")  # the proxies in front
accesslog = None if os.environ.get("LOG_FORMAT") == "json" else "-"  # JSON: the app logs each request itself
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
errorlog = "-"


def child_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """A dead worker's Prometheus files are merged into the totals, not counted as a live process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
