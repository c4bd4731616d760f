"""Fixtures shared by the optimizer tests: a loopback OpenAI-compatible server and LM configs pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optimizer.lm import LMConfig

try:  # tests/optimizer is a rootdir-style test directory today; keep working if it becomes a package
    from fake_lm import FakeLMServer
except ImportError:  # pragma: no cover - depends on the test layout
    from tests.optimizer.fake_lm import FakeLMServer

# litellm's provider for OpenAI-compatible *text completion*: it POSTs to {api_base}/completions.
FAKE_COMPLETION_MODEL = "text-completion-openai/fake"
# litellm's OpenAI chat provider: it POSTs to {api_base}/chat/completions.
FAKE_CHAT_MODEL = "openai/fake"


@pytest.fixture
def fake_server() -> Iterator[FakeLMServer]:
    """A running fake server: `.url` (api_base), `.requests`, `.paths`, settable `.responder`, `.fail_next()`."""
    with FakeLMServer() as server:
        yield server


@pytest.fixture
def fake_lm_config(fake_server: FakeLMServer, tmp_path: Path) -> Callable[..., LMConfig]:
    """Factory of LMConfigs aimed at `fake_server` (completion mode, cache in tmp_path); kwargs override fields."""

    def make(**overrides: Any) -> LMConfig:
        values: dict[str, Any] = {"model": FAKE_COMPLETION_MODEL, "api_base": fake_server.url, "api_key": "x",
                                  "cache_path": str(tmp_path / "lm_cache.sqlite"), **overrides}
        return LMConfig(**values)

    return make
