"""Prometheus metrics at /metrics.

Two sources, one page:
- per-process request metrics from django-prometheus's middleware (requests, latencies, responses by status);
  under gunicorn with several workers set PROMETHEUS_MULTIPROC_DIR (scripts/topology.sh does) so every worker's
  counters are summed, not whichever worker answered the scrape;
- the job figures read from the database at scrape time, because runs and evaluations execute in Celery workers
  on other machines: queue depth (queued and running runs and evaluations) and LM calls, tokens and errors so
  far. Each is one aggregate query, so a scrape costs the same at any history size.

With GOVERNANCE_METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>` (else 401).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from governance.models import Evaluation, EvaluationStatus, OptimizationRun, RunStatus, Trial

WAITING_RUNS = (RunStatus.QUEUED, RunStatus.RUNNING)
WAITING_EVALUATIONS = (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING)


class JobCollector:
    """Queue depth and LM usage of runs and evaluations, read from the database on each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield self._queue_depth()
        yield from self._lm_usage()

    def _queue_depth(self) -> GaugeMetricFamily:
        gauge = GaugeMetricFamily("governance_jobs", "Runs and evaluations waiting or executing, by status.",
                                  labels=["kind", "status"])
        runs = _counts(OptimizationRun.objects.filter(status__in=WAITING_RUNS))
        evaluations = _counts(Evaluation.objects.filter(status__in=WAITING_EVALUATIONS))
        for status in WAITING_RUNS:
            gauge.add_metric(["run", str(status)], runs.get(str(status), 0))
        for status in WAITING_EVALUATIONS:
            gauge.add_metric(["evaluation", str(status)], evaluations.get(str(status), 0))
        return gauge

    def _lm_usage(self) -> Iterator[CounterMetricFamily]:
        calls = CounterMetricFamily("governance_lm_calls", "LM calls made by runs and evaluations.", labels=["kind"])
        tokens = CounterMetricFamily("governance_lm_tokens", "Prompt and completion tokens.", labels=["kind", "type"])
        errors = CounterMetricFamily("governance_lm_errors", "Failed evaluation examples (call or parse) and "
                                                             "failed trials.", labels=["kind"])
        run = OptimizationRun.objects.aggregate(calls=Sum("calls"), prompt=Sum("prompt_tokens"),
                                                completion=Sum("completion_tokens"))
        run_errors = Trial.objects.filter(~Q(error="")).aggregate(n=Count("id"))["n"]
        evaluation = Evaluation.objects.aggregate(calls=Sum("calls"), prompt=Sum("prompt_tokens"),
                                                  completion=Sum("completion_tokens"), errors=Sum("errors"))
        for kind, usage, failed in (("run", run, run_errors), ("evaluation", evaluation, evaluation["errors"])):
            calls.add_metric([kind], usage["calls"] or 0)
            tokens.add_metric([kind, "prompt"], usage["prompt"] or 0)
            tokens.add_metric([kind, "completion"], usage["completion"] or 0)
            errors.add_metric([kind], failed or 0)
        yield from (calls, tokens, errors)


def _counts(queryset) -> dict[str, int]:
    return {row["status"]: row["n"] for row in queryset.values("status").annotate(n=Count("id"))}


JOBS = CollectorRegistry(auto_describe=False)
JOBS.register(JobCollector())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = generate_latest(_process_registry()) + generate_latest(JOBS)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or every gunicorn worker's summed when PROMETHEUS_MULTIPROC_DIR is set."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def _authorized(request: HttpRequest) -> bool:
    token = settings.GOVERNANCE_METRICS_TOKEN
    if not token:
        return True
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
