"""One language-model client over litellm: retries, a persistent response cache, usage accounting and budgets.

Every model string litellm understands works (``openai/gpt-4o-mini``, ``text-completion-openai/x`` against any
OpenAI-compatible ``api_base``, ...), plus ``local/gemma-3-270m``, served in-process by
:mod:`optimizer.local_model` through a litellm custom provider.

litellm is imported lazily, on the first uncached call: the import costs seconds of CPU, which web processes,
the CLI and the export path must not pay. Importing this module never imports litellm.

A request is the full tuple (model, api_base, endpoint, prompt or messages, temperature, max_tokens, stop and,
only when temperature > 0, the sample index). Its SHA-256 keys the SQLite cache, so a re-run with the same seed
replays the same answers for free, while distinct samples drawn at temperature > 0 never collapse into one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any, Self, TypeVar

from optimizer.errors import BudgetExceeded, LMError, LMUnreachableError, ModelFailing

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MODES = ("auto", "chat", "completion")
LOCAL_PREFIX = "local/"
CACHE_FORMAT = 1  # part of every cache key: bump it to invalidate all entries if the stored shape changes
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_CAP_SECONDS = 60.0
DEFAULT_MAX_CONSECUTIVE_FAILURES = 10  # the same limit as the Django runner's GuardedLM
TRIPPED_SECONDS = 30.0  # how long a model that hit its failure limit is refused before one call may probe it
CHARS_PER_TOKEN = 3  # the fallback token estimate: fewer characters per token than English text has in any
# common tokenizer (about 4), so the estimate errs on the long side and prompts fitted to it do fit


# --- public value types --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMConfig:
    """How to reach one model and how to call it.

    Attributes:
        model: Any litellm model string, e.g. "openai/gpt-4o-mini", "text-completion-openai/x" or
            "local/gemma-3-270m".
        api_base: Base URL of the endpoint (e.g. "http://127.0.0.1:8080/v1"); None for the provider default.
        api_key: Secret for the endpoint. Never serialized by `to_dict` nor shown in `repr`.
        temperature: Default sampling temperature; 0 means greedy.
        max_tokens: Default cap on generated tokens per call.
        timeout: Seconds per HTTP request.
        num_retries: Retries (with exponential backoff and jitter) on 429, 5xx, timeouts and connection errors.
        max_concurrency: Worker threads used by `LM.map`.
        cache_path: SQLite file of the persistent response cache; None disables caching.
        mode: "chat", "completion" or "auto" (completion for local/* and text-completion-* models, else chat).
        max_consecutive_failures: After this many failed calls in a row (each after its retries), the next
            uncached call raises `ModelFailing` without being sent, which ends a search or an evaluation instead
            of scoring a dead model as a run of wrong answers. A circuit breaker: after TRIPPED_SECONDS calls
            are let through again (a long-lived Runtime recovers with its endpoint); a success resets the count.
            0 disables the limit.
        context_window: Tokens the model accepts (prompt and answer together). None asks the local model's
            n_ctx or litellm's model info (see `LM.context_window`).
    """

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 256
    timeout: float = 60.0
    num_retries: int = 4
    max_concurrency: int = 4
    cache_path: str | None = None
    mode: str = "auto"
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    context_window: int | None = None

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ValueError(f"`model` must be a non-empty litellm model string, but got {self.model!r}.")
        if self.mode not in MODES:
            raise ValueError(f"`mode` must be one of {', '.join(MODES)}, but got {self.mode!r}.")
        _check(self.temperature >= 0, f"`temperature >= 0` must hold, but got temperature={self.temperature}.")
        _check(self.max_tokens >= 1, f"`max_tokens >= 1` must hold, but got max_tokens={self.max_tokens}.")
        _check(self.timeout > 0, f"`timeout > 0` must hold, but got timeout={self.timeout}.")
        _check(self.num_retries >= 0, f"`num_retries >= 0` must hold, but got num_retries={self.num_retries}.")
        _check(self.max_concurrency >= 1,
               f"`max_concurrency >= 1` must hold, but got max_concurrency={self.max_concurrency}.")
        _check(self.max_consecutive_failures >= 0, "`max_consecutive_failures >= 0` must hold, but got "
                                                   f"max_consecutive_failures={self.max_consecutive_failures}.")
        _check(self.context_window is None or self.context_window >= 1,
               f"`context_window >= 1` must hold, but got context_window={self.context_window}.")

    @property
    def resolved_mode(self) -> str:
        """"chat" or "completion": the endpoint `LM.complete` uses."""
        if self.mode != "auto":
            return self.mode
        provider = self.model.split("/", 1)[0]
        return "completion" if self.model.startswith(LOCAL_PREFIX) or provider.startswith("text-completion") \
            else "chat"

    @property
    def is_local(self) -> bool:
        """True for models served in-process by `optimizer.local_model`."""
        return self.model.startswith(LOCAL_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the configuration, without `api_key` (secrets never reach storage)."""
        data = asdict(self)
        del data["api_key"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        """Build a config from `to_dict` output (an `api_key` key is accepted too); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LMConfig keys: {', '.join(unknown)}; expected some of {', '.join(sorted(known))}.")
        return cls(**data)


@dataclass(frozen=True)
class Budget:
    """Hard caps on one LM's spending; None means unlimited.

    `max_calls` is exact, even under concurrency: a call reserves its slot before it is sent. `max_tokens` and
    `max_usd` are checked against the totals of calls already finished, so the call that crosses them
    completes and the next one raises.
    """

    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_calls", "max_tokens", "max_usd"):
            value = getattr(self, name)
            _check(value is None or value >= 0, f"`{name} >= 0` must hold, but got {name}={value}.")


class SharedBudget:
    """One Budget that several LMs spend from together: a run's task model and its metric's judge model, so
    the caps hold for what the run spends, not for each model apart. Each LM keeps its own usage counters; the
    caps are checked against the sum, with the same rules as `Budget` (calls exact under concurrency, tokens
    and USD checked against finished calls).

    Example:
        >>> task = LM(task_config, Budget(max_calls=100))
        >>> judge = LM(judge_config, task.shared_budget)  # both together make at most 100 calls
    """

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self._lock = threading.Lock()
        self._calls = self._tokens = 0
        self._cost = 0.0

    def reserve(self) -> None:
        """Check every cap and take one call slot, atomically: concurrent callers cannot overshoot."""
        budget = self.budget
        with self._lock:
            if budget.max_calls is not None and self._calls >= budget.max_calls:
                raise BudgetExceeded("calls", budget.max_calls, self._calls)
            if budget.max_tokens is not None and self._tokens >= budget.max_tokens:
                raise BudgetExceeded("tokens", budget.max_tokens, self._tokens)
            if budget.max_usd is not None and self._cost >= budget.max_usd:
                raise BudgetExceeded("usd", budget.max_usd, self._cost)
            self._calls += 1

    def record(self, response: LMResponse) -> None:
        with self._lock:
            self._tokens += response.prompt_tokens + response.completion_tokens
            self._cost += response.cost_usd


@dataclass(frozen=True)
class LMResponse:
    """One answer. `cached` is True when it came from the response cache (and cost nothing this time)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    finish_reason: str | None


@dataclass(frozen=True)
class Usage:
    """A snapshot of an LM's spending; `after - before` gives the spending of what ran in between.

    `calls` counts requests actually sent (failed ones included, since they may be billed); cache hits are
    counted in `cached_calls` only. Tokens and cost are those of successful uncached calls.
    `seconds_in_lm` sums the wall time of uncached calls across threads (retries and backoff included).
    """

    calls: int
    cached_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds_in_lm: float
    failed_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @classmethod
    def zero(cls) -> Usage:
        """Nothing spent: the start of a sum of spendings."""
        return cls(calls=0, cached_calls=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, seconds_in_lm=0.0)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# --- the client ----------------------------------------------------------------------------------------------


class LM:
    """A thread-safe client for one model: cache, budget, retries and usage accounting around litellm.

    Args:
        config: Which model to call and how.
        budget: Hard spending caps; None means unlimited. A `SharedBudget` (another LM's `shared_budget`) makes
            this LM spend from the same caps as the LMs that share it.
        sleep: Called with the backoff delay in seconds between retries (tests pass a no-op).
        rng: Source of the backoff jitter.

    Example:
        >>> lm = LM(LMConfig(model="local/gemma-3-270m", cache_path="lm_cache.sqlite"))
        >>> lm.complete("Text: I want my money back\\nLabel:", stop=["\\n"]).text  # doctest: +SKIP
    """

    def __init__(self, config: LMConfig, budget: Budget | SharedBudget | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> None:
        self.config = config
        self.shared_budget = budget if isinstance(budget, SharedBudget) else SharedBudget(budget)
        self.budget = self.shared_budget.budget
        self._meter = _Meter(self.shared_budget, config.max_consecutive_failures)
        self._cache = _ResponseCache(config.cache_path) if config.cache_path else None
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._closed = False
        self._model_info_lock = threading.Lock()
        self._model_info: dict[str, Any] | None = None  # litellm's model info, looked up once

    def __repr__(self) -> str:
        return f"LM(model={self.config.model!r}, api_base={self.config.api_base!r}, mode={self.config.resolved_mode!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def is_chat(self) -> bool:
        """True when the model is called with chat messages, False for raw-text completion (base models)."""
        return self.config.resolved_mode == "chat"

    def complete(self, prompt: str, *, stop: list[str] | None = None, sample: int = 0,
                 temperature: float | None = None, max_tokens: int | None = None) -> LMResponse:
        """Complete a raw text prompt (sent as a single user message when the model is a chat model).

        Args:
            prompt: The text to continue.
            stop: Sequences that end generation (not included in the answer).
            sample: Which sample this is; only matters (for the cache) when temperature > 0.
            temperature: Overrides `config.temperature` for this call.
            max_tokens: Overrides `config.max_tokens` for this call.

        Raises:
            BudgetExceeded: A budget cap is reached (checked before any uncached call).
            LMUnreachableError: The endpoint refused the connection, or the local model is not installed.
            LMError: The call failed for good (rejected request, or retries exhausted).
        """
        if self.is_chat:
            return self.chat([{"role": "user", "content": prompt}], stop=stop, sample=sample,
                             temperature=temperature, max_tokens=max_tokens)
        return self._request({"mode": "completion", "prompt": prompt}, stop, sample, temperature, max_tokens)

    def chat(self, messages: list[dict[str, Any]], *, stop: list[str] | None = None, sample: int = 0,
             temperature: float | None = None, max_tokens: int | None = None) -> LMResponse:
        """Send chat messages (``{"role": ..., "content": ...}``) through the chat endpoint.

        Arguments and errors are those of `complete`. For the local base model, litellm hands the messages to
        the local provider, which renders them as plain "role: content" lines.
        """
        payload = {"mode": "chat", "messages": [dict(m) for m in messages]}
        return self._request(payload, stop, sample, temperature, max_tokens)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Run `fn` over `items` on `config.max_concurrency` threads; results keep the order of `items`.

        On the first exception the items not yet started are cancelled. The exception re-raised is a
        `BudgetExceeded` if any item hit the budget, else the failure of the earliest item.
        """
        items = list(items)
        if not items:
            return []
        workers = min(self.config.max_concurrency, len(items))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lm-map")
        try:
            futures = [pool.submit(fn, item) for item in items]
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after a failure, nothing new starts
        return _results_in_order(futures)

    def usage(self) -> Usage:
        """A consistent snapshot of the spending so far (safe to call from any thread)."""
        return self._meter.snapshot()

    def set_failure_limit(self, limit: int) -> int:
        """Change `config.max_consecutive_failures` for the calls from now on (0: no limit); returns the old one."""
        _check(limit >= 0, f"`max_consecutive_failures >= 0` must hold, but got max_consecutive_failures={limit}.")
        return self._meter.set_failure_limit(limit)

    def context_window(self) -> int | None:
        """Tokens the model accepts, prompt and answer together; None when nobody knows.

        In order: `config.context_window`; for local/* models the n_ctx of `optimizer.local_model`; litellm's
        model info (`litellm.get_model_info`, its ``max_input_tokens``, looked up once, lazily: it imports
        litellm).
        """
        if self.config.context_window is not None:
            return self.config.context_window
        if self.config.is_local:
            from optimizer import local_model

            return local_model.context_window()
        info = self._litellm_model_info()
        window = info.get("max_input_tokens") or info.get("max_tokens")
        return int(window) if window else None

    @property
    def token_estimator(self) -> str:
        """How `count_tokens` counts: "litellm" (the model's tokenizer) or "chars/3" (a conservative estimate)."""
        return "litellm" if self._litellm_model_info() else f"chars/{CHARS_PER_TOKEN}"

    def count_tokens(self, text: str) -> int:
        """The tokens `text` takes for this model, as an estimate that errs on the long side.

        litellm's `token_counter` for the model when litellm knows the model (its model info); else
        ``ceil(characters / 3)``, which overestimates English text in every common tokenizer (about 4
        characters per token), e.g. for self-hosted and local models whose tokenizer litellm does not have.
        """
        if self._litellm_model_info():
            try:
                return int(_litellm().token_counter(model=self.config.model, text=text))
            except Exception:  # noqa: BLE001 - a tokenizer litellm cannot load: fall back to the estimate
                logger.debug("token_counter failed for %s; estimating", self.config.model, exc_info=True)
        return -(-len(text) // CHARS_PER_TOKEN)

    def _litellm_model_info(self) -> dict[str, Any]:
        """litellm's model info ({} for models it does not know: self-hosted, fakes, local/*)."""
        if self.config.is_local:
            return {}
        with self._model_info_lock:
            if self._model_info is None:
                try:
                    self._model_info = dict(_litellm().get_model_info(self.config.model) or {})
                except Exception:  # noqa: BLE001 - litellm raises a bare Exception for unknown models
                    self._model_info = {}
            return self._model_info

    def close(self) -> None:
        """Close the cache file. Idempotent; the LM cannot be called afterwards."""
        self._closed = True
        if self._cache is not None:
            self._cache.close()

    # --- internals -------------------------------------------------------------------------------------------

    def _request(self, payload: dict[str, Any], stop: list[str] | None, sample: int,
                 temperature: float | None, max_tokens: int | None) -> LMResponse:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        request = self._build_request(payload, stop, sample, temperature, max_tokens)
        key = _request_key(request)
        hit = self._cache.get(key) if self._cache is not None else None
        if hit is not None:
            self._meter.record_cached()
            logger.debug("cache hit for %s (key %s)", self.config.model, key[:12])
            return hit
        tripped = self._meter.tripped()
        if tripped is not None:  # refused unsent: the model failed too many calls in a row just now
            failures, last_error = tripped
            raise ModelFailing(self.config.model, failures, last_error) from last_error
        self._meter.reserve()  # raises BudgetExceeded before anything is sent
        started = time.monotonic()
        try:
            response = self._call_with_retries(request)
        except BaseException as exc:
            self._meter.record_failure(time.monotonic() - started, exc)
            raise
        self._meter.record(response, time.monotonic() - started)
        if self._cache is not None:
            self._cache.put(key, self.config.model, response)
        return response

    def _build_request(self, payload: dict[str, Any], stop: list[str] | None, sample: int,
                       temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
        """The full, canonical description of a call: what is sent and what the cache key covers."""
        temperature = self.config.temperature if temperature is None else temperature
        max_tokens = self.config.max_tokens if max_tokens is None else max_tokens
        _check(temperature >= 0, f"`temperature >= 0` must hold, but got temperature={temperature}.")
        _check(max_tokens >= 1, f"`max_tokens >= 1` must hold, but got max_tokens={max_tokens}.")
        _check(sample >= 0, f"`sample >= 0` must hold, but got sample={sample}.")
        request = {"model": self.config.model, "api_base": self.config.api_base, **payload,
                   "temperature": float(temperature), "max_tokens": int(max_tokens),
                   "stop": list(stop) if stop else None}
        if temperature > 0:
            # Only sampled calls carry the index: at temperature 0 every "sample" is the same greedy answer.
            request["sample"] = sample
        return request

    def _call_with_retries(self, request: dict[str, Any]) -> LMResponse:
        attempts = self.config.num_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return _call_litellm(self.config, request)
            except Exception as exc:  # classified below (retry or translate), never swallowed
                if attempt == attempts or not _is_retryable(exc):
                    raise _as_lm_error(exc, self.config, attempt) from exc
                delay = self._backoff_delay(attempt, exc)
                logger.warning("model %s: attempt %d/%d failed (%s); retrying in %.2fs", self.config.model,
                               attempt, attempts, _short_reason(exc), delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _backoff_delay(self, attempt: int, exc: BaseException) -> float:
        """Exponential backoff with "equal jitter" (half fixed, half random), honouring Retry-After."""
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # jitter spreads concurrent retries apart
        retry_after = _retry_after_seconds(exc)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
        return delay


def _results_in_order(futures: list[Future[R]]) -> list[R]:
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if errors:
        budget_errors = [e for e in errors if isinstance(e, BudgetExceeded)]
        raise (budget_errors or errors)[0]
    return [f.result() for f in futures]


def _request_key(request: dict[str, Any]) -> str:
    material = {"cache_format": CACHE_FORMAT, **request}
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- accounting ----------------------------------------------------------------------------------------------


class _Meter:
    """Usage counters under one lock, so snapshots are consistent; the budget checks are the SharedBudget's."""

    def __init__(self, budget: SharedBudget, failure_limit: int) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._calls = self._cached = self._failed = self._prompt_tokens = self._completion_tokens = 0
        self._consecutive_failures = 0
        self._failure_limit = failure_limit
        self._last_failure: BaseException | None = None
        self._tripped_until = 0.0  # time.monotonic() before which uncached calls are refused
        self._cost = self._seconds = 0.0

    def set_failure_limit(self, limit: int) -> int:
        with self._lock:
            previous, self._failure_limit = self._failure_limit, limit
            self._trip_if_over_limit()
            return previous

    def tripped(self) -> tuple[int, BaseException] | None:
        """(failures in a row, the last error) while calls are refused; None when a call may be sent."""
        with self._lock:
            if self._last_failure is None or time.monotonic() >= self._tripped_until:
                return None
            return self._consecutive_failures, self._last_failure

    def _trip_if_over_limit(self) -> None:
        """Caller holds the lock."""
        over = self._failure_limit and self._consecutive_failures >= self._failure_limit
        self._tripped_until = time.monotonic() + TRIPPED_SECONDS if over else 0.0

    def reserve(self) -> None:
        """Take one call slot of the budget (raises BudgetExceeded when a cap is reached), then count it."""
        with self._lock:
            self._budget.reserve()
            self._calls += 1

    def record(self, response: LMResponse, seconds: float) -> None:
        self._budget.record(response)
        with self._lock:
            self._consecutive_failures = 0
            self._tripped_until = 0.0
            self._prompt_tokens += response.prompt_tokens
            self._completion_tokens += response.completion_tokens
            self._cost += response.cost_usd
            self._seconds += seconds

    def record_failure(self, seconds: float, error: BaseException) -> None:
        """Count a failed call; the one that reaches the limit trips the breaker."""
        with self._lock:
            self._failed += 1
            self._seconds += seconds
            if isinstance(error, LMError):  # not KeyboardInterrupt and the like: those say nothing of the model
                self._consecutive_failures += 1
                self._last_failure = error
                self._trip_if_over_limit()

    def record_cached(self) -> None:
        with self._lock:
            self._cached += 1  # not a reset of the failure count: a stored answer says nothing of the model now

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(calls=self._calls, cached_calls=self._cached, prompt_tokens=self._prompt_tokens,
                         completion_tokens=self._completion_tokens, cost_usd=self._cost,
                         seconds_in_lm=self._seconds, failed_calls=self._failed)


# --- persistent cache ----------------------------------------------------------------------------------------


class _ResponseCache:
    """SQLite response cache shared by threads (one connection behind a lock) and by processes (WAL mode).

    A broken cache never breaks a call: read and write errors are logged and treated as a miss.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, each INSERT is its own short transaction.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                Path(path).expanduser(), timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer across processes
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS lm_responses (key TEXT PRIMARY KEY, model TEXT NOT NULL,"
                               " response TEXT NOT NULL, created_at REAL NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise LMError(f"cannot open the LM response cache {path}: {exc}") from exc

    def get(self, key: str) -> LMResponse | None:
        try:
            with self._lock:
                if self._conn is None:
                    return None
                row = self._conn.execute("SELECT response FROM lm_responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            value = json.loads(row[0])
            return LMResponse(text=value["text"], prompt_tokens=value["prompt_tokens"],
                              completion_tokens=value["completion_tokens"], cost_usd=value["cost_usd"],
                              cached=True, finish_reason=value["finish_reason"])
        except (sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            logger.warning("LM cache %s: read failed (%s); treating as a miss", self.path, exc)
            return None

    def put(self, key: str, model: str, response: LMResponse) -> None:
        value = {"text": response.text, "prompt_tokens": response.prompt_tokens,
                 "completion_tokens": response.completion_tokens, "cost_usd": response.cost_usd,
                 "finish_reason": response.finish_reason}
        try:
            with self._lock:
                if self._conn is not None:
                    self._conn.execute("INSERT OR REPLACE INTO lm_responses VALUES (?, ?, ?, ?)",
                                       (key, model, json.dumps(value, ensure_ascii=False), time.time()))
        except sqlite3.Error as exc:
            logger.warning("LM cache %s: write failed (%s); the answer is not cached", self.path, exc)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# --- litellm -------------------------------------------------------------------------------------------------

_litellm_lock = threading.Lock()
_litellm_module: ModuleType | None = None
_http_session: Any = None  # the httpx.Client this module gave litellm as `client_session`, if any


def _litellm() -> ModuleType:
    """Import and configure litellm once per process, on first use."""
    global _litellm_module
    with _litellm_lock:
        if _litellm_module is None:
            # Without this litellm fetches its cost map from the network at import time and waits on it.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on every error
            litellm.telemetry = False
            if not os.environ.get("LITELLM_LOG"):
                # litellm logs every call at INFO; keep its warnings, unless the user asked for its logs.
                logging.getLogger("LiteLLM").setLevel(logging.WARNING)
            _litellm_module = litellm
        _share_http_session(_litellm_module)
    return _litellm_module


def _share_http_session(litellm: ModuleType) -> None:
    """One HTTP client for litellm's OpenAI-compatible calls in this process, unless the caller set one.

    Without `litellm.client_session`, litellm's text-completion path builds a new OpenAI SDK client, and with it
    a new httpx client, for every call; each loads the CA bundle into a new SSL context, about 30 ms of CPU a
    call, and opens a new connection. The shared client is litellm's own per-call one, built once (same
    defaults, connection pool, redirects). Requests, answers and usage are unchanged. Caller holds the lock.
    """
    global _http_session
    if litellm.client_session is not None:
        return
    try:
        from litellm.llms.openai.common_utils import OpenAIHTTPClient as client_class
    except ImportError:  # litellm moved it: the OpenAI SDK's default client is what it wraps
        from openai import DefaultHttpxClient as client_class
    _http_session = litellm.client_session = client_class()


def _forget_http_session_after_fork() -> None:
    """A forked child (e.g. a Celery prefork worker) must not share the parent's pooled sockets."""
    global _http_session
    if _litellm_module is not None and _http_session is not None and \
            _litellm_module.client_session is _http_session:
        _litellm_module.client_session = None
    _http_session = None


os.register_at_fork(after_in_child=_forget_http_session_after_fork)


def _call_litellm(config: LMConfig, request: dict[str, Any]) -> LMResponse:
    """One attempt, no retries anywhere below us: we own the retry policy."""
    litellm = _litellm()
    if config.is_local:
        from optimizer import local_model

        local_model.ensure_available()  # a clear LMUnreachableError instead of one wrapped by litellm
        local_model.register()
    kwargs: dict[str, Any] = {
        "model": config.model, "api_base": config.api_base, "api_key": config.api_key,
        "temperature": request["temperature"], "max_tokens": request["max_tokens"], "stop": request["stop"],
        "timeout": config.timeout, "num_retries": 0, "max_retries": 0,
    }
    if config.is_local and "sample" in request:
        # llama.cpp reseeds each call: without a per-sample seed every sample of a prompt would be identical.
        kwargs["seed"] = request["sample"]
    with _without_unused_success_logging(litellm):
        if request["mode"] == "completion":
            raw = litellm.text_completion(prompt=request["prompt"], **kwargs)
            text = raw.choices[0].text
        else:
            raw = litellm.completion(messages=request["messages"], **kwargs)
            text = raw.choices[0].message.content
    usage = getattr(raw, "usage", None)
    return LMResponse(text=text or "", prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                      cost_usd=_cost(litellm, config, raw), cached=False,
                      finish_reason=raw.choices[0].finish_reason)


_LITELLM_CALLBACK_LISTS = ("callbacks", "success_callback", "_async_success_callback", "input_callback")


@contextmanager
def _without_unused_success_logging(litellm: ModuleType) -> Iterator[None]:
    """Skip litellm's success logging when nobody registered a callback to receive it.

    After every successful call litellm builds its standard logging payload (prices the response again, copies
    the request) on a thread pool, about 2 ms of CPU a call, even with no callback to hand it to. litellm marks
    its own nested calls "internal" to skip that; an LM call with no callback registered is marked the same
    way. Failure logging, the response and its usage are untouched, and a callback registered later (e.g. an
    observability integration) gets every call again.
    """
    try:
        from litellm._internal_context import is_internal_call
    except ImportError:  # an older litellm without the switch: it logs, as it always did
        yield
        return
    if any(getattr(litellm, name, None) for name in _LITELLM_CALLBACK_LISTS):
        yield
        return
    token = is_internal_call.set(True)
    try:
        yield
    finally:
        is_internal_call.reset(token)


def _cost(litellm: ModuleType, config: LMConfig, raw: Any) -> float:
    """USD cost when litellm's (local) cost map knows the model; 0.0 otherwise. Never raises.

    litellm prices every response it returns and keeps the figure in its hidden params: read it rather than
    pricing the response a second time (a cost-map lookup is a few ms of CPU, and for a model litellm does not
    know it searches generalized names and raises before giving up).
    """
    if config.is_local:
        return 0.0
    hidden = getattr(raw, "_hidden_params", None)
    # litellm stamps the call id and the price together (the price is None when it knows none for the model).
    if hidden is not None and hidden.get("litellm_call_id") is not None:
        return float(hidden.get("response_cost") or 0.0)
    try:
        return float(litellm.completion_cost(completion_response=raw) or 0.0)
    except Exception:  # noqa: BLE001 - unknown models (self-hosted, fakes) simply cost nothing
        return 0.0


# --- error classification ------------------------------------------------------------------------------------

_RETRYABLE_NAMES = frozenset({"RateLimitError", "Timeout", "APITimeoutError", "APIConnectionError",
                              "InternalServerError", "ServiceUnavailableError", "BadGatewayError"})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes/contexts, outermost first (litellm wraps openai wraps httpx wraps OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_retryable(exc: BaseException) -> bool:
    """Rate limits, timeouts, connection failures and 5xx are transient; anything else (4xx, bugs) is not."""
    if any(isinstance(e, LMError) for e in _chain(exc)):
        return False
    if type(exc).__name__ in _RETRYABLE_NAMES:
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 429) or status >= 500)


def _connect_failure(exc: BaseException) -> BaseException | None:
    """The innermost "could not connect at all" error (refused, unknown host), if that is what happened."""
    found = None
    for e in _chain(exc):
        if isinstance(e, (ConnectionRefusedError, socket.gaierror)) or type(e).__name__ == "ConnectError":
            found = e
    return found


def _as_lm_error(exc: BaseException, config: LMConfig, attempts: int) -> LMError:
    """Translate a final failure into the optimizer's error types, with a message naming the model."""
    inner = next((e for e in _chain(exc) if isinstance(e, LMError)), None)
    if inner is not None:
        return inner  # already ours (e.g. raised by the local provider inside litellm)
    refused = _connect_failure(exc)
    if refused is not None:
        where = config.api_base or "its default endpoint"
        return LMUnreachableError(f"cannot reach model {config.model} at {where}: {refused}"
                                  f" (after {attempts} attempt{'s' if attempts > 1 else ''})")
    if _is_retryable(exc):
        return LMError(f"model {config.model} failed after {attempts} attempts: {_short_reason(exc)}")
    status = getattr(exc, "status_code", None)
    return LMError(f"model {config.model} rejected the request"
                   f"{f' (HTTP {status})' if status else ''}: {_short_reason(exc)}")


_REDUNDANT_PREFIX = re.compile(r"^(?:litellm\.)?[A-Za-z]+(?:Error|Timeout): ")


def _short_reason(exc: BaseException, limit: int = 500) -> str:
    """"ExceptionName: message", without the class-name prefixes litellm repeats inside its messages."""
    message = str(getattr(exc, "message", None) or exc).strip().replace("\n", " ")
    while _REDUNDANT_PREFIX.match(message):
        message = _REDUNDANT_PREFIX.sub("", message, count=1)
    if len(message) > limit:
        message = message[:limit] + "..."
    return f"{type(exc).__name__}: {message}"


def _retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After header (seconds form), when the error carries the HTTP response."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None
