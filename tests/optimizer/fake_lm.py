"""A loopback OpenAI-compatible server for tests: litellm talks to it over real HTTP, nothing leaves the machine.

It serves `POST /v1/completions` and `POST /v1/chat/completions`. What it answers is decided by a pluggable
`responder(prompt, request) -> text`, where `prompt` is the completion prompt or the content of the last chat
message. Every request body is recorded, and failures can be injected: an HTTP status for the next N requests
(`fail_next`), a delay longer than the client's timeout (`delay_next`), or a dropped connection (`drop_next`).

Token counts are whitespace word counts, so tests can predict them exactly.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Responder = Callable[[str, dict[str, Any]], str]

COMPLETIONS_PATH = "/v1/completions"
CHAT_PATH = "/v1/chat/completions"


def default_responder(prompt: str, request: dict[str, Any]) -> str:
    """Answers every request with the same word, so tests that do not care about text need no setup."""
    return "ok"


def count_tokens(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


class FakeLMServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 with a random port, run in a background thread.

    Attributes:
        url: The base URL to give litellm as `api_base`, e.g. "http://127.0.0.1:PORT/v1".
        requests: The JSON body of every request received, in arrival order (failed ones included).
        paths: The URL path of every request, parallel to `requests`.
        responder: Called as `responder(prompt, request)` to produce the answer text; settable at any time.
    """

    def __init__(self, responder: Responder = default_responder) -> None:
        self.responder: Responder = responder
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults: list[tuple[str, Any]] = []  # queue of ("status", code) | ("delay", s) | ("drop", None)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-lm", daemon=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cuts injected delays short so shutdown does not wait for them
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- failure injection -------------------------------------------------------------------------------

    def fail_next(self, status: int, n: int = 1) -> None:
        """Answer the next `n` requests with HTTP `status` and an OpenAI-style error body."""
        self._queue_faults("status", status, n)

    def delay_next(self, seconds: float, n: int = 1) -> None:
        """Sleep `seconds` before answering each of the next `n` requests (to trip client timeouts)."""
        self._queue_faults("delay", seconds, n)

    def drop_next(self, n: int = 1) -> None:
        """Close the connection without any response for the next `n` requests (a connection reset)."""
        self._queue_faults("drop", None, n)

    def _queue_faults(self, kind: str, arg: Any, n: int) -> None:
        with self._lock:
            self._faults.extend([(kind, arg)] * n)

    # --- request handling (called from handler threads) --------------------------------------------------

    @property
    def prompts(self) -> list[str]:
        """The prompt (or last chat message) of every recorded request."""
        with self._lock:
            return [prompt_of(body) for body in self.requests]

    def _record(self, path: str, body: dict[str, Any]) -> tuple[str, Any] | None:
        """Record one request and pop the fault to apply to it, if any."""
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            return self._faults.pop(0) if self._faults else None

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def prompt_of(body: dict[str, Any]) -> str:
    """The completion prompt, or the content of the last chat message, of a request body."""
    if "messages" in body:
        content = body["messages"][-1].get("content") if body["messages"] else ""
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return content or ""
    prompt = body.get("prompt", "")
    return prompt[0] if isinstance(prompt, list) and prompt else str(prompt)


def _apply_limits(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """Cut the answer at the first stop sequence or at max_tokens words, like a real server would."""
    stops = body.get("stop") or []
    if isinstance(stops, str):
        stops = [stops]
    cuts = [text.index(s) for s in stops if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    words = text.split()
    if max_tokens is not None and len(words) > int(max_tokens):
        return " ".join(words[: int(max_tokens)]), "length"
    return text, "stop"


def _response_body(path: str, body: dict[str, Any], text: str, finish_reason: str) -> dict[str, Any]:
    prompt_tokens = count_tokens(prompt_of(body)) if path == COMPLETIONS_PATH else sum(
        count_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count_tokens(text),
             "total_tokens": prompt_tokens + count_tokens(text)}
    common = {"id": f"fake-{time.monotonic_ns()}", "created": int(time.time()), "model": body.get("model", "fake"),
              "usage": usage}
    if path == COMPLETIONS_PATH:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return {**common, "object": "text_completion", "choices": [choice]}
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    return {**common, "object": "chat.completion", "choices": [choice]}


def _make_handler(server: FakeLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers; exercises litellm's connection pool

        def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
            pass  # keep test output clean

        def do_POST(self) -> None:  # stdlib naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if path not in (COMPLETIONS_PATH, CHAT_PATH):
                self._send_json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})
                return
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send_json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
                return
            fault = server._record(path, body)
            if fault is not None and self._apply_fault(fault):
                return
            self._answer(path, body)

        def _apply_fault(self, fault: tuple[str, Any]) -> bool:
            """Apply an injected fault; True when the request has been fully handled by it."""
            kind, arg = fault
            if kind == "delay":
                server._sleep(arg)
                return False
            if kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)  # SHUT_RDWR: the client sees the connection die mid-request
                return True
            error_type = "rate_limit_error" if arg == 429 else "server_error" if arg >= 500 else "invalid_request"
            self._send_json(arg, {"error": {"message": f"injected failure {arg}", "type": error_type,
                                            "code": str(arg)}})
            return True

        def _answer(self, path: str, body: dict[str, Any]) -> None:
            if body.get("stream"):
                self._send_json(400, {"error": {"message": "streaming not supported", "type": "invalid_request"}})
                return
            try:
                text = server.responder(prompt_of(body), body)
            except Exception as exc:  # noqa: BLE001 - a broken responder surfaces as a 500, like a server bug
                self._send_json(500, {"error": {"message": f"responder failed: {exc!r}", "type": "server_error"}})
                return
            text, finish_reason = _apply_limits(text, body)
            self._send_json(200, _response_body(path, body, text, finish_reason))

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout); nothing to answer

    return Handler
