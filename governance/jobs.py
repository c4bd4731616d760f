"""The job backend and the guarded LM, shared by optimization runs and system evaluations.

Work is announced by actions on commit (signals or on_commit callbacks) and handed to Celery when a broker is
configured, else to a small thread pool in this process. Why a local thread pool rather than Celery's eager
mode when no broker is configured: an eager task runs inside `.delay()`, i.e. in the web request that asked for
the work, which would hold the request (and a gunicorn worker) for minutes to hours. The pool returns at once;
rows, progress and audit events are the same either way. What the pool cannot do is survive the process: work
whose process died is picked up by the recovery job (celery beat runs it every minute).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import fields
from typing import Any, Self

from django.conf import settings
from django.db import connection, connections

from governance.models import OptimizationRun, RunStatus
from optimizer import (
    LM,
    Budget,
    BudgetExceeded,
    LMConfig,
    LMError,
    LMUnreachableError,
    Metric,
    StopRequested,
    metric_spending_from,
)

logger = logging.getLogger(__name__)

StopCheck = Callable[[], "str | None"]


def worker_name(kind: str) -> str:
    """Unique per executing thread: the run row records which executor owns it."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class LocalExecutor:
    """The embedded default's job runner: a small thread pool in this process (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="governance-run")
        self._futures: dict[Hashable, list[Future[Any]]] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, job: Callable[[], Any]) -> Future[Any]:
        """Run `job` in the pool; `key` names the work (a run id, "evaluation-7") for `wait`."""
        future = self._pool.submit(_in_own_connection, job)
        with self._lock:
            self._futures.setdefault(key, []).append(future)
        return future

    def wait(self, key: Hashable, timeout: float | None = None) -> None:
        """Block until every job of `key` submitted so far has ended (tests, the CLI, shutdown)."""
        with self._lock:
            futures = list(self._futures.get(key, []))
        done, pending = wait_futures(futures, timeout=timeout)
        if pending:
            raise TimeoutError(f"{key} still executing after {timeout}s")
        for future in done:
            future.result()


def _in_own_connection(job: Callable[[], Any]) -> Any:
    try:
        return job()
    except Exception:  # a pool thread has nobody to raise to; the run row holds the error already
        logger.exception("local job failed")
        raise
    finally:
        connections.close_all()  # this thread's connections; Django would otherwise leak one per job


_executor: LocalExecutor | None = None
_executor_lock = threading.Lock()


def local_executor() -> LocalExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = LocalExecutor(int(getattr(settings, "GOVERNANCE_LOCAL_RUN_WORKERS", 2)))
        return _executor


def enqueue(task: str, *args: Any, key: Hashable, local: Callable[[], Any]) -> None:
    """Hand one job to Celery when a broker is configured, else run `local` in this process's pool under `key`."""
    if settings.CELERY_BROKER_URL:
        send_task(task, *args)
    else:
        local_executor().submit(key, local)


def send_task(task: str, *args: Any) -> None:
    """Publish a Celery task by its registered name, so this layer never imports the task modules above it."""
    from governance.celery import app  # start-up cost: web processes without a broker never load Celery

    app.send_task(task, args=list(args))


def lm_config_from(values: dict[str, Any]) -> LMConfig:
    """An LMConfig from stored settings: the deployment's cache file, the key from the environment."""
    known = {f.name for f in fields(LMConfig)} - {"api_key", "cache_path"}
    return LMConfig(**{k: v for k, v in values.items() if k in known},
                    cache_path=settings.GOVERNANCE_LM_CACHE_PATH,
                    api_key=os.environ.get("GOVERNANCE_LM_API_KEY") or None)


class ModelFailing(LMUnreachableError):
    """The model rejected or failed every one of many calls in a row: the run cannot produce anything useful."""


class GuardedLM:
    """An LM that trips after `limit` consecutive failed calls and then refuses every call.

    The optimizer scores a failed call as a wrong answer, which is right for one bad example but would turn a
    broken endpoint (revoked key, wrong model name, HTTP 400 on everything) into a run that "succeeds" with
    zeros and proposes garbage. LMUnreachableError is the error the optimizer lets end a run, so that is what a
    tripped guard raises. Everything else is delegated to the wrapped LM.
    """

    def __init__(self, lm: LM, limit: int = 10, stop_check: StopCheck | None = None) -> None:
        self._lm, self._limit = lm, limit
        self._failures, self._tripped = 0, None
        self._lock = threading.Lock()
        self.stop_check = stop_check

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lm, name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lm.close()

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._lm.complete, *args, **kwargs)

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self._lm.chat, *args, **kwargs)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._tripped is not None:
            raise self._tripped
        stop = self.stop_check() if self.stop_check is not None else None
        if stop:
            raise StopRequested(stop)  # before the call: a cancel costs no further spending
        try:
            response = method(*args, **kwargs)
        except LMError as exc:
            if isinstance(exc, BudgetExceeded):
                raise
            self._count_failure(exc)
            raise
        with self._lock:
            self._failures = 0
        return response

    def _count_failure(self, exc: LMError) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self._limit and self._tripped is None:
                self._tripped = ModelFailing(f"model {self._lm.config.model} failed {self._failures} calls in a "
                                             f"row; last error: {exc}")
            tripped = self._tripped
        if tripped is not None:
            raise tripped from exc


def guarded_lm(config: LMConfig, budget: Budget | None = None, stop_check: StopCheck | None = None) -> Any:
    """The LM runs and checks use; typed Any because it stands in for optimizer.LM by duck typing."""
    return GuardedLM(LM(config, budget), stop_check=stop_check)


def guarded_metric(metric: Metric, lm: Any) -> Metric:
    """`metric` as a run or an evaluation with `lm` uses it: a judge's own model spends from `lm`'s budget and
    stops on its stop check and failure guard, so a budget bounds what the judge spends too."""
    stop_check = getattr(lm, "stop_check", None)
    return metric_spending_from(metric, lm, wrap=lambda judge: GuardedLM(judge, stop_check=stop_check))


class PollingThread:
    """A side thread that calls `poll()` every `interval` seconds while the `with` block runs, until `poll()`
    returns False. It has its own database connection, closed when it ends; an exception is logged, and ends it."""

    def __init__(self, name: str, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def poll(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval) and self.poll():
                pass
        except Exception:  # the thread is a helper: the work it watches goes on, and the log says why it stopped
            logger.exception("%s failed", self._thread.name)
        finally:
            connection.close()


class CancelWatch(PollingThread):
    """A run's stop check for its LMs: a thread reads the run row every `interval` seconds, and the check (called
    before every LM call, from the LM's own threads) answers from memory. So a cancel stops any phase, search or
    final evaluation, within about a second, without a query per call. If the thread cannot read, the
    trial-boundary checks stay in charge."""

    def __init__(self, run_id: int, interval: float = 1.0) -> None:
        super().__init__(f"cancel-watch-run-{run_id}", interval)
        self.run_id = run_id
        self.reason: str | None = None

    def __call__(self) -> str | None:
        return self.reason

    def poll(self) -> bool:
        run = OptimizationRun.objects.only("status", "cancel_requested").filter(pk=self.run_id).first()
        if run is None:  # not visible to this connection (an uncommitted test transaction): nothing to watch
            return False
        if run.cancel_requested:
            self.reason = "cancel requested"
        elif run.status != RunStatus.RUNNING:
            self.reason = f"run is {run.status}"
        return self.reason is None


