"""A tiny counting reverse proxy in front of the llama.cpp OpenAI-compatible server.

Both optimizers point their litellm client at this proxy, so every LM call that reaches the server is
counted the same way, whoever sends it. For each forwarded request it records when it started and ended
(wall clock, `time.time()`, comparable across processes), the HTTP status and the token usage from the
response body. Control endpoints (GET only, never forwarded):

- ``/__mark``: ``{"index": n}``, the number of requests recorded so far;
- ``/__records?since=n``: the records from index n on.

It also pins ``repeat_penalty`` to 1.0 on every completion request that does not set it: llama-cpp-python's
server defaults to 1.1, while the in-process provider (optimizer/local_model.py) runs the raw model with 1.0.
Both optimizers get the same decoding either way.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PINNED = {"repeat_penalty": 1.0}


class RequestLog:
    """Thread-safe list of request records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    def mark(self) -> int:
        with self._lock:
            return len(self._records)

    def since(self, index: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records[index:])


def make_handler(upstream_host: str, upstream_port: int, log: RequestLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return  # silent: the records are the log

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            url = urlparse(self.path)
            if url.path == "/__mark":
                self._reply_json({"index": log.mark()})
            elif url.path == "/__records":
                since = int(parse_qs(url.query).get("since", ["0"])[0])
                self._reply_json({"records": log.since(since)})
            else:
                self._forward(None)

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            length = int(self.headers.get("Content-Length") or 0)
            self._forward(self.rfile.read(length))

        def _forward(self, body: bytes | None) -> None:
            started = time.time()
            if body and self.path.rstrip("/").endswith("completions"):
                payload = json.loads(body)
                for key, value in PINNED.items():
                    payload.setdefault(key, value)
                body = json.dumps(payload).encode("utf-8")
            conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=3600)
            try:
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
                content_type = response.getheader("Content-Type", "application/json")
            except OSError as exc:
                data, status, content_type = json.dumps({"error": str(exc)}).encode(), 502, "application/json"
            finally:
                conn.close()
            ended = time.time()
            if body is not None:
                usage = _usage(data)
                log.add({"start": started, "end": ended, "path": self.path, "status": status,
                         "prompt_tokens": usage.get("prompt_tokens", 0),
                         "completion_tokens": usage.get("completion_tokens", 0)})
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout); the call reached the server and stays counted
                log.add({"start": ended, "end": ended, "path": "client-disconnected", "status": 499,
                         "prompt_tokens": 0, "completion_tokens": 0})

        def _reply_json(self, value: Any) -> None:
            data = json.dumps(value).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _usage(data: bytes) -> dict[str, int]:
    try:
        usage = json.loads(data).get("usage") or {}
        return {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
    except (ValueError, AttributeError):
        return {}


class CountingProxy:
    """Runs the proxy in a daemon thread: `with CountingProxy(8090, "127.0.0.1", 8089) as proxy: ...`."""

    def __init__(self, port: int, upstream_host: str, upstream_port: int) -> None:
        self.log = RequestLog()
        self.server = ThreadingHTTPServer(("127.0.0.1", port),
                                          make_handler(upstream_host, upstream_port, self.log))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- client side (used by the workers) ----------------------------------------------------------------------


def proxy_mark(proxy_url: str) -> int:
    return int(_get_json(f"{proxy_url}/__mark")["index"])


def proxy_records(proxy_url: str, since: int) -> list[dict[str, Any]]:
    return list(_get_json(f"{proxy_url}/__records?since={since}")["records"])


def _get_json(url: str) -> Any:
    from urllib.request import urlopen

    with urlopen(url, timeout=30) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def summarize(records: list[dict[str, Any]], window: tuple[float, float]) -> dict[str, Any]:
    """Calls, tokens and time inside LM calls (union of request intervals) within a wall-clock window."""
    start, end = window
    in_window = [r for r in records if r["start"] >= start - 1e-3 and r["end"] <= end + 1e-3]
    inside = [r for r in in_window if r["path"] != "client-disconnected"]
    busy = union_seconds([(max(r["start"], start), min(r["end"], end)) for r in inside])
    wall = end - start
    first = min((r["start"] for r in inside), default=end)
    last = max((r["end"] for r in inside), default=end)
    return {"calls": len(inside), "failed_calls": sum(1 for r in inside if r["status"] >= 400),
            "client_disconnects": len(in_window) - len(inside),
            "prompt_tokens": sum(r["prompt_tokens"] for r in inside),
            "completion_tokens": sum(r["completion_tokens"] for r in inside),
            "wall_seconds": round(wall, 2), "lm_busy_seconds": round(busy, 2),
            "overhead_seconds": round(wall - busy, 2),
            "overhead_fraction": round((wall - busy) / wall, 4) if wall > 0 else 0.0,
            # where the overhead is: before the first call, idle gaps between calls, after the last call
            "before_first_call_seconds": round(first - start, 2),
            "idle_between_calls_seconds": round((last - first) - busy, 2) if inside else 0.0,
            "after_last_call_seconds": round(end - last, 2)}


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for s, e in sorted(intervals):
        if current_end is None or s > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = s, e
        else:
            current_end = max(current_end, e)
    if current_end is not None:
        total += current_end - current_start
    return total
