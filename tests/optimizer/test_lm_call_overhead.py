"""The per-call work optimizer.lm saves litellm (issue 15 item 5), against the loopback fake server.

What is checked is behaviour, never time: the process's calls share one HTTP client (a client set by the caller
is kept), a forked child drops the parent's, the cost is litellm's own price of the response, and litellm's
success logging runs exactly when a callback is registered to receive it. bench/lm_overhead.py measures the CPU.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from optimizer import lm as lm_module
from optimizer.lm import LM

CALLBACK_LISTS = ("callbacks", "success_callback", "_async_success_callback", "failure_callback",
                  "_async_failure_callback", "input_callback")


@pytest.fixture
def litellm(monkeypatch: pytest.MonkeyPatch) -> Any:
    """litellm as a fresh process sees it: no client session yet, no callbacks (restored afterwards)."""
    module = lm_module._litellm()
    monkeypatch.setattr(module, "client_session", None)
    monkeypatch.setattr(lm_module, "_http_session", None)
    for name in CALLBACK_LISTS:
        monkeypatch.setattr(module, name, [])
    return module


class SubmissionRecorder:
    """Stands in for litellm's logging thread pool: records what litellm hands it, runs nothing."""

    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        self.submitted.append(args[0] if args else fn)


# --- one HTTP client for the process ----------------------------------------------------------------------------


def test_calls_of_every_lm_share_one_http_client(litellm, fake_server, fake_lm_config) -> None:
    LM(fake_lm_config()).complete("first")
    session = litellm.client_session
    assert isinstance(session, httpx.Client)
    sent: list[httpx.Request] = []
    session.event_hooks["request"].append(sent.append)

    LM(fake_lm_config(cache_path=None)).complete("second")  # another LM, the text-completion path
    LM(fake_lm_config(model="openai/fake", cache_path=None)).complete("third")  # the chat path

    assert litellm.client_session is session
    assert [r.url.path for r in sent] == ["/v1/completions", "/v1/chat/completions"]
    assert fake_server.prompts == ["first", "second", "third"]


def test_a_client_session_the_caller_set_is_kept(litellm, fake_server, fake_lm_config) -> None:
    sent: list[httpx.Request] = []
    own = httpx.Client(event_hooks={"request": [sent.append]})
    litellm.client_session = own

    LM(fake_lm_config()).complete("hello")

    assert litellm.client_session is own
    assert len(sent) == 1
    own.close()


def test_a_forked_child_builds_its_own_http_client(litellm, fake_server, fake_lm_config) -> None:
    LM(fake_lm_config()).complete("in the parent")
    parents = litellm.client_session

    lm_module._forget_http_session_after_fork()  # what os.register_at_fork runs in the child
    assert litellm.client_session is None
    LM(fake_lm_config(cache_path=None)).complete("in the child")

    assert isinstance(litellm.client_session, httpx.Client)
    assert litellm.client_session is not parents


def test_forking_keeps_a_session_the_caller_set(litellm) -> None:
    own = httpx.Client()
    litellm.client_session = own
    lm_module._forget_http_session_after_fork()
    assert litellm.client_session is own  # not ours to drop
    own.close()


# --- cost: litellm's own price of the response ------------------------------------------------------------------


@pytest.mark.parametrize("model, priced_as", [("openai/gpt-4o-mini", "gpt-4o-mini"),
                                               ("text-completion-openai/gpt-3.5-turbo-instruct",
                                                "gpt-3.5-turbo-instruct")])
def test_cost_is_litellms_price_of_the_tokens(litellm, fake_server, fake_lm_config, model, priced_as) -> None:
    fake_server.responder = lambda prompt, request: "word " * 20
    response = LM(fake_lm_config(model=model)).complete("a prompt of some words")

    prompt_cost, completion_cost = litellm.cost_per_token(model=priced_as, prompt_tokens=response.prompt_tokens,
                                                          completion_tokens=response.completion_tokens)
    assert response.cost_usd > 0
    assert response.cost_usd == pytest.approx(prompt_cost + completion_cost)


@pytest.mark.parametrize("model", ["text-completion-openai/fake", "openai/fake"])
def test_a_model_litellm_has_no_price_for_costs_nothing(litellm, fake_server, fake_lm_config, model) -> None:
    response = LM(fake_lm_config(model=model)).complete("a prompt")
    assert response.cost_usd == 0.0
    assert response.prompt_tokens == 2  # the usage itself is still the server's


# --- litellm's success logging --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["text-completion-openai/fake", "openai/fake"])
def test_no_success_logging_without_a_callback(litellm, fake_server, fake_lm_config, monkeypatch, model) -> None:
    pool = SubmissionRecorder()
    monkeypatch.setattr(litellm.utils, "executor", pool)

    LM(fake_lm_config(model=model)).complete("hello")

    assert pool.submitted == []


def test_a_registered_callback_still_gets_every_call(litellm, fake_server, fake_lm_config) -> None:
    seen: list[str] = []
    arrived = threading.Event()

    def on_success(kwargs: dict[str, Any], response: Any, start_time: Any, end_time: Any) -> None:
        seen.append(response.choices[0].text)  # litellm may log a text completion twice (two wrappers)
        if {"answer to one", "answer to two"} <= set(seen):
            arrived.set()

    litellm.success_callback = [on_success]
    fake_server.responder = lambda prompt, request: f"answer to {prompt}"
    lm = LM(fake_lm_config(cache_path=None))
    lm.complete("one")
    lm.complete("two")

    assert arrived.wait(timeout=30), f"litellm logged only {sorted(set(seen))}"
