"""optimizer.lm against a loopback OpenAI-compatible server, through litellm's real HTTP code path."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from optimizer import lm as lm_module
from optimizer.errors import BudgetExceeded, LMError, LMUnreachableError
from optimizer.lm import LM, Budget, LMConfig, Usage

REPO_ROOT = Path(__file__).resolve().parents[2]


class RecordingSleep:
    """Stands in for time.sleep: records the backoff delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def echo(prompt: str, request: dict) -> str:
    return f"echo {prompt}"


# --- import hygiene and config --------------------------------------------------------------------------------


def test_importing_lm_does_not_import_litellm() -> None:
    code = "import optimizer.lm, optimizer.local_model, sys; assert 'litellm' not in sys.modules, 'litellm imported'"
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_config_to_dict_omits_api_key_and_round_trips() -> None:
    config = LMConfig(model="openai/gpt-4o-mini", api_base="http://h/v1", api_key="secret", temperature=0.7)
    data = config.to_dict()
    assert "api_key" not in data
    assert "secret" not in repr(config)
    assert LMConfig.from_dict(data) == LMConfig(model="openai/gpt-4o-mini", api_base="http://h/v1", temperature=0.7)


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown LMConfig keys: temprature"):
        LMConfig.from_dict({"model": "openai/x", "temprature": 0.5})


def test_config_validates_fields() -> None:
    with pytest.raises(ValueError, match=r"`mode` must be one of auto, chat, completion, but got 'text'\."):
        LMConfig(model="openai/x", mode="text")
    with pytest.raises(ValueError, match=r"`max_concurrency >= 1` must hold, but got max_concurrency=0\."):
        LMConfig(model="openai/x", max_concurrency=0)


@pytest.mark.parametrize(("model", "mode", "expected"), [
    ("local/gemma-3-270m", "auto", "completion"),
    ("text-completion-openai/x", "auto", "completion"),
    ("openai/gpt-4o-mini", "auto", "chat"),
    ("openai/some-base-model", "completion", "completion"),
    ("local/gemma-3-270m", "chat", "chat"),
])
def test_mode_resolution(model: str, mode: str, expected: str) -> None:
    config = LMConfig(model=model, mode=mode)
    assert config.resolved_mode == expected
    assert LM(config).is_chat is (expected == "chat")


# --- requests and responses -------------------------------------------------------------------------------------


def test_complete_posts_to_v1_completions(fake_server, fake_lm_config) -> None:
    fake_server.responder = echo
    lm = LM(fake_lm_config(max_tokens=5))

    response = lm.complete("Text: hello world\nLabel:", stop=["\n"])

    assert fake_server.paths == ["/v1/completions"]
    body = fake_server.requests[0]
    assert body["model"] == "fake"
    assert body["prompt"] == "Text: hello world\nLabel:"
    assert body["max_tokens"] == 5
    assert body["stop"] == ["\n"]
    assert body["temperature"] == 0
    assert response.text == "echo Text: hello world"  # cut at the stop sequence by the server
    assert (response.prompt_tokens, response.completion_tokens) == (4, 4)
    assert response.finish_reason == "stop"
    assert response.cached is False
    assert response.cost_usd == 0.0  # litellm does not know the model "fake"


def test_max_tokens_truncation_reports_length(fake_server, fake_lm_config) -> None:
    fake_server.responder = lambda prompt, request: "one two three four five"
    response = LM(fake_lm_config()).complete("x", max_tokens=2)
    assert (response.text, response.finish_reason, response.completion_tokens) == ("one two", "length", 2)


def test_chat_mode_posts_messages_to_chat_completions(fake_server, fake_lm_config) -> None:
    fake_server.responder = echo
    lm = LM(fake_lm_config(model="openai/fake"))
    messages = [{"role": "system", "content": "Classify."}, {"role": "user", "content": "refund please"}]

    response = lm.chat(messages, temperature=0.0)

    assert lm.is_chat
    assert fake_server.paths == ["/v1/chat/completions"]
    assert fake_server.requests[0]["messages"] == messages
    assert response.text == "echo refund please"
    assert response.prompt_tokens == 3


def test_complete_on_a_chat_model_sends_one_user_message(fake_server, fake_lm_config) -> None:
    LM(fake_lm_config(model="openai/fake")).complete("hello")
    assert fake_server.paths == ["/v1/chat/completions"]
    assert fake_server.requests[0]["messages"] == [{"role": "user", "content": "hello"}]


def test_known_model_gets_a_cost_from_litellm(fake_server, fake_lm_config) -> None:
    fake_server.responder = lambda prompt, request: "word " * 50
    response = LM(fake_lm_config(model="openai/gpt-4o-mini")).complete("a prompt of some words")
    assert response.cost_usd > 0


# --- cache ------------------------------------------------------------------------------------------------------


def test_identical_call_is_a_cache_hit(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config())
    first = lm.complete("same prompt")
    second = lm.complete("same prompt")

    assert len(fake_server.requests) == 1
    assert (first.cached, second.cached) == (False, True)
    assert (second.text, second.prompt_tokens, second.completion_tokens) == (first.text, first.prompt_tokens,
                                                                            first.completion_tokens)
    usage = lm.usage()
    assert (usage.calls, usage.cached_calls) == (1, 1)


def test_cache_persists_across_lm_instances(fake_server, fake_lm_config) -> None:
    config = fake_lm_config()
    with LM(config) as first_lm:
        first_lm.complete("persisted")

    second_lm = LM(config)
    response = second_lm.complete("persisted")

    assert response.cached is True
    assert len(fake_server.requests) == 1
    assert second_lm.usage().calls == 0


@pytest.mark.parametrize("change", [
    {"prompt": "other prompt"}, {"max_tokens": 7}, {"stop": ["\n"]}, {"temperature": 0.5},
])
def test_any_request_difference_is_a_cache_miss(fake_server, fake_lm_config, change) -> None:
    lm = LM(fake_lm_config())
    lm.complete("prompt")
    args = {"prompt": "prompt", **change}
    lm.complete(args.pop("prompt"), **args)
    assert len(fake_server.requests) == 2


def test_model_and_api_base_are_part_of_the_cache_key(fake_server, fake_lm_config) -> None:
    LM(fake_lm_config()).complete("prompt")
    LM(fake_lm_config(model="text-completion-openai/other")).complete("prompt")
    LM(fake_lm_config(api_base=fake_server.url + "/")).complete("prompt")
    assert len(fake_server.requests) == 3


def test_sample_index_is_ignored_at_temperature_zero(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config())
    lm.complete("prompt", sample=0)
    assert lm.complete("prompt", sample=3).cached is True
    assert len(fake_server.requests) == 1


def test_distinct_samples_at_positive_temperature_never_collapse(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config(temperature=0.8))
    for sample in range(3):
        assert lm.complete("prompt", sample=sample).cached is False
    assert lm.complete("prompt", sample=1).cached is True
    assert len(fake_server.requests) == 3


def test_without_cache_path_every_call_is_sent(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config(cache_path=None))
    lm.complete("prompt")
    assert lm.complete("prompt").cached is False
    assert len(fake_server.requests) == 2


def test_failed_calls_are_not_cached(fake_server, fake_lm_config, sleep) -> None:
    lm = LM(fake_lm_config(num_retries=0), sleep=sleep)
    fake_server.fail_next(500)
    with pytest.raises(LMError):
        lm.complete("prompt")
    assert lm.complete("prompt").cached is False
    assert len(fake_server.requests) == 2


# --- retries and errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_with_growing_backoff(fake_server, fake_lm_config, sleep, status) -> None:
    fake_server.fail_next(status, n=2)
    lm = LM(fake_lm_config(num_retries=4), sleep=sleep)

    response = lm.complete("prompt")

    assert response.text == "ok"
    assert len(fake_server.requests) == 3
    assert len(sleep.delays) == 2
    # Equal jitter: attempt k waits within [base * 2**(k-1) / 2, base * 2**(k-1)].
    assert 0.25 <= sleep.delays[0] <= 0.5
    assert 0.5 <= sleep.delays[1] <= 1.0
    assert lm.usage().calls == 1  # one logical call, however many attempts


def test_retries_exhausted_raise_lm_error_naming_the_model(fake_server, fake_lm_config, sleep) -> None:
    fake_server.fail_next(500, n=10)
    lm = LM(fake_lm_config(num_retries=2), sleep=sleep)

    with pytest.raises(LMError, match=r"model text-completion-openai/fake failed after 3 attempts: Internal"):
        lm.complete("prompt")

    assert len(fake_server.requests) == 3
    usage = lm.usage()
    assert (usage.calls, usage.failed_calls) == (1, 1)


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(fake_server, fake_lm_config, sleep, status) -> None:
    fake_server.fail_next(status)
    lm = LM(fake_lm_config(), sleep=sleep)

    with pytest.raises(LMError, match=rf"model text-completion-openai/fake rejected the request \(HTTP {status}\)"):
        lm.complete("prompt")

    assert len(fake_server.requests) == 1
    assert sleep.delays == []


def test_dropped_connection_is_retried(fake_server, fake_lm_config, sleep) -> None:
    fake_server.drop_next()
    assert LM(fake_lm_config(), sleep=sleep).complete("prompt").text == "ok"
    assert len(fake_server.requests) == 2


def test_timeout_is_retried_then_succeeds(fake_server, fake_lm_config, sleep) -> None:
    fake_server.delay_next(5.0)
    lm = LM(fake_lm_config(timeout=0.5), sleep=sleep)

    started = time.monotonic()
    assert lm.complete("prompt").text == "ok"

    assert len(fake_server.requests) == 2
    assert time.monotonic() - started < 4.0  # the slow attempt was abandoned at the timeout


def test_timeouts_exhausted_raise_lm_error(fake_server, fake_lm_config, sleep) -> None:
    fake_server.delay_next(5.0, n=2)
    lm = LM(fake_lm_config(timeout=0.3, num_retries=1), sleep=sleep)

    with pytest.raises(LMError, match=r"failed after 2 attempts: Timeout") as excinfo:
        lm.complete("prompt")

    assert not isinstance(excinfo.value, LMUnreachableError)
    assert len(fake_server.requests) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_connection_raises_unreachable(fake_lm_config, sleep) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    lm = LM(fake_lm_config(api_base=url, num_retries=1), sleep=sleep)

    with pytest.raises(LMUnreachableError, match=rf"cannot reach model text-completion-openai/fake at {url}: "):
        lm.complete("prompt")

    assert len(sleep.delays) == 1  # retried: a server that is starting up refuses for a moment


def test_closed_lm_cannot_be_called(fake_lm_config) -> None:
    lm = LM(fake_lm_config())
    lm.close()
    lm.close()  # idempotent
    with pytest.raises(RuntimeError, match="is closed"):
        lm.complete("prompt")


# --- budget -----------------------------------------------------------------------------------------------------


def test_max_calls_is_exact_under_concurrency(fake_server, fake_lm_config) -> None:
    def slow(prompt: str, request: dict) -> str:
        time.sleep(0.05)  # keep all threads in flight together
        return "ok"

    fake_server.responder = slow
    lm = LM(fake_lm_config(), Budget(max_calls=5))
    barrier = threading.Barrier(8)

    def call(i: int) -> str:
        barrier.wait()
        try:
            return lm.complete(f"prompt {i}").text
        except BudgetExceeded as exc:
            return f"budget:{exc.resource}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(8)))

    assert len(fake_server.requests) == 5
    assert sorted(results) == ["budget:calls"] * 3 + ["ok"] * 5
    assert lm.usage().calls == 5


def test_budget_is_checked_before_anything_is_sent(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config(), Budget(max_calls=0))
    with pytest.raises(BudgetExceeded, match=r"budget exhausted: calls limit 0 reached \(used 0\)"):
        lm.complete("prompt")
    assert fake_server.requests == []


def test_cache_hits_cost_no_budget(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config(), Budget(max_calls=1))
    lm.complete("a")
    assert lm.complete("a").cached is True
    with pytest.raises(BudgetExceeded) as excinfo:
        lm.complete("b")
    assert (excinfo.value.resource, excinfo.value.limit, excinfo.value.used) == ("calls", 1, 1)


def test_max_tokens_budget_stops_after_the_crossing_call(fake_server, fake_lm_config) -> None:
    fake_server.responder = lambda prompt, request: "three word answer"
    lm = LM(fake_lm_config(), Budget(max_tokens=8))  # each call: 2 prompt + 3 completion tokens

    lm.complete("first prompt")
    lm.complete("second prompt")  # starts at 5 < 8, ends at 10
    with pytest.raises(BudgetExceeded) as excinfo:
        lm.complete("third prompt")

    assert (excinfo.value.resource, excinfo.value.limit, excinfo.value.used) == ("tokens", 8, 10)
    assert len(fake_server.requests) == 2


def test_max_usd_budget(fake_server, fake_lm_config, monkeypatch) -> None:
    monkeypatch.setattr(lm_module, "_cost", lambda litellm, config, raw: 0.25)
    lm = LM(fake_lm_config(), Budget(max_usd=0.5))
    lm.complete("a")
    lm.complete("b")
    with pytest.raises(BudgetExceeded, match="usd limit 0.5 reached"):
        lm.complete("c")
    assert lm.usage().cost_usd == pytest.approx(0.5)


# --- usage and map ----------------------------------------------------------------------------------------------


def test_usage_accounting_and_deltas(fake_server, fake_lm_config) -> None:
    fake_server.responder = lambda prompt, request: "two words"
    lm = LM(fake_lm_config())
    lm.complete("one two three")
    before = lm.usage()
    lm.complete("four five")
    lm.complete("four five")

    after = lm.usage()
    delta = after - before

    assert (after.calls, after.cached_calls, after.prompt_tokens, after.completion_tokens) == (2, 1, 5, 4)
    assert after.seconds_in_lm > 0
    assert delta == Usage(calls=1, cached_calls=1, prompt_tokens=2, completion_tokens=2, cost_usd=0.0,
                          seconds_in_lm=delta.seconds_in_lm, failed_calls=0)
    assert delta.total_tokens == 4


def test_map_preserves_order_and_runs_concurrently(fake_server, fake_lm_config) -> None:
    in_flight, peak, lock = [0], [0], threading.Lock()

    def tracked(prompt: str, request: dict) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02 * (int(prompt.split()[-1]) % 3))  # finish out of order
        with lock:
            in_flight[0] -= 1
        return f"answer {prompt.split()[-1]}"

    fake_server.responder = tracked
    lm = LM(fake_lm_config(max_concurrency=3))

    texts = lm.map(lambda i: lm.complete(f"item {i}").text, list(range(12)))

    assert texts == [f"answer {i}" for i in range(12)]
    assert 2 <= peak[0] <= 3


def test_map_of_nothing_is_empty(fake_lm_config) -> None:
    assert LM(fake_lm_config()).map(lambda item: item, []) == []


def test_map_raises_the_earliest_failure(fake_lm_config) -> None:
    def fn(i: int) -> int:
        if i in (2, 5):
            time.sleep(0.05 if i == 2 else 0)
            raise ValueError(f"item {i}")
        return i

    with pytest.raises(ValueError, match="item 2"):
        LM(fake_lm_config(max_concurrency=8)).map(fn, list(range(8)))


def test_map_raises_budget_exceeded_before_other_errors(fake_lm_config) -> None:
    second_started = threading.Event()

    def fn(i: int) -> int:
        if i == 0:
            second_started.wait(5)  # both items run; the ordinary failure comes first
            raise ValueError("ordinary failure")
        second_started.set()
        time.sleep(0.05)
        raise BudgetExceeded("calls", 1, 1)

    with pytest.raises(BudgetExceeded):
        LM(fake_lm_config(max_concurrency=2)).map(fn, [0, 1])


def test_map_propagates_budget_exceeded_from_lm_calls(fake_server, fake_lm_config) -> None:
    lm = LM(fake_lm_config(max_concurrency=4), Budget(max_calls=3))
    with pytest.raises(BudgetExceeded):
        lm.map(lambda i: lm.complete(f"prompt {i}"), list(range(10)))
    assert len(fake_server.requests) == 3


def test_lms_sharing_a_budget_stay_within_it_together(fake_server, fake_lm_config) -> None:
    fake_server.responder = lambda prompt, request: "three word answer"
    task = LM(fake_lm_config(cache_path=None), Budget(max_calls=3, max_tokens=100))
    judge = LM(fake_lm_config(cache_path=None, model="text-completion-openai/judge"), task.shared_budget)
    task.complete("a")
    task.complete("b")
    judge.complete("c")
    for lm in (task, judge):
        with pytest.raises(BudgetExceeded, match=r"calls limit 3 reached \(used 3\)"):
            lm.complete("d")
    assert len(fake_server.requests) == 3
    assert (task.usage().calls, judge.usage().calls) == (2, 1), "each LM still counts its own spending"
    assert judge.budget == task.budget == Budget(max_calls=3, max_tokens=100)


def test_a_shared_token_cap_counts_every_lm_that_shares_it(fake_server, fake_lm_config) -> None:
    fake_server.responder = lambda prompt, request: "three word answer"  # 2 prompt + 3 completion tokens a call
    task = LM(fake_lm_config(cache_path=None), Budget(max_tokens=8))
    judge = LM(fake_lm_config(cache_path=None), task.shared_budget)
    task.complete("first prompt")
    judge.complete("second prompt")
    with pytest.raises(BudgetExceeded) as excinfo:
        task.complete("third prompt")
    assert (excinfo.value.resource, excinfo.value.limit, excinfo.value.used) == ("tokens", 8, 10)
    assert task.usage().prompt_tokens + task.usage().completion_tokens == 5
