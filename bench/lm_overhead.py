"""CPU per LM call in the calling process: optimizer.LM (litellm underneath) against a plain httpx POST.

    . .venv/bin/activate && export LITELLM_LOCAL_MODEL_COST_MAP=True
    python bench/lm_overhead.py                     # 300 calls per measurement, writes bench/results/lm_overhead.json
    python bench/lm_overhead.py --profile 100       # also prints cProfile's top entries for 100 calls of each mode

The loopback fake server (tests/optimizer/fake_lm.py) runs in a child process, so its CPU is not counted; the
figure is `time.process_time()` of this process (every thread: litellm also works on its own logging threads)
divided by the calls, after warm-up calls that pay the imports and the first connection. No response cache:
every call goes through litellm. Measured for the text-completion path (`text-completion-openai/...`, what the
bench and the local llama server use), the chat path (`openai/...`), the chat path with a model litellm has a
price for (`openai/gpt-4o-mini`: the cost lookup hits), and 4 threads on one LM (`LM.map`, as a search runs).

CPU time on a shared machine is inflated by other processes (cache and SMT contention): the load average is
recorded next to the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
WARM_UP_CALLS = 5

SERVE = """
import sys, time
sys.path.insert(0, {root!r})
from tests.optimizer.fake_lm import FakeLMServer
server = FakeLMServer().start()
print(server.url, flush=True)
sys.stdin.read()  # until the parent closes our stdin
"""


def start_fake_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE.format(root=str(ROOT))], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def cpu_per_call(call: Callable[[int], Any], calls: int) -> dict[str, float]:
    for i in range(WARM_UP_CALLS):
        call(-1 - i)
    cpu, thread_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
    for i in range(calls):
        call(i)
    time.sleep(0.2)  # let litellm's logging threads finish what the calls handed them, and count it
    return {"cpu_ms_per_call": round(1000 * (time.process_time() - cpu) / calls, 2),
            "calling_thread_cpu_ms_per_call": round(1000 * (time.thread_time() - thread_cpu) / calls, 2),
            "wall_ms_per_call": round(1000 * (time.perf_counter() - wall - 0.2) / calls, 2)}


def lm_call(url: str, model: str) -> Callable[[int], Any]:
    from optimizer.lm import LM, LMConfig

    lm = LM(LMConfig(model=model, api_base=url, api_key="sk-local", cache_path=None))
    return lambda i: lm.complete(f"Text: ticket number {i}\nLabel:", stop=["\n"])


def lm_map_call(url: str, batch: int = 4) -> Callable[[int], Any]:
    """Four threads on one LM, as a search evaluates: one `call(i)` sends `batch` calls, counted per call below."""
    from optimizer.lm import LM, LMConfig

    lm = LM(LMConfig(model="text-completion-openai/fake", api_base=url, api_key="sk-local", cache_path=None,
                     max_concurrency=batch))
    return lambda i: lm.map(lambda j: lm.complete(f"Text: ticket {i}.{j}\nLabel:", stop=["\n"]), range(batch))


def httpx_call(url: str) -> Callable[[int], Any]:
    import httpx

    client = httpx.Client()
    body = {"model": "fake", "temperature": 0.0, "max_tokens": 256, "stop": ["\n"]}
    return lambda i: client.post(f"{url}/completions", json={**body, "prompt": f"Text: ticket number {i}\nLabel:"},
                                 headers={"Authorization": "Bearer sk-local"}).json()


def measure(url: str, calls: int) -> dict[str, dict[str, float]]:
    figures = {
        "httpx POST (floor)": cpu_per_call(httpx_call(url), calls),
        "LM text-completion-openai/fake": cpu_per_call(lm_call(url, "text-completion-openai/fake"), calls),
        "LM openai/fake (chat)": cpu_per_call(lm_call(url, "openai/fake"), calls),
        "LM openai/gpt-4o-mini (chat, priced)": cpu_per_call(lm_call(url, "openai/gpt-4o-mini"), calls),
    }
    batch = 4
    per_batch = cpu_per_call(lm_map_call(url, batch), max(1, calls // batch))
    figures["LM text-completion, 4 threads (LM.map)"] = {k: round(v / batch, 2) for k, v in per_batch.items()}
    return figures


def profile(url: str, calls: int, top: int = 25) -> None:
    for model in ("text-completion-openai/fake", "openai/fake"):
        call = lm_call(url, model)
        for i in range(WARM_UP_CALLS):
            call(-1 - i)
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(calls):
            call(i)
        profiler.disable()
        print(f"\n=== cProfile, {calls} calls, {model} (calling thread only) ===")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--profile", type=int, default=0, metavar="CALLS", help="also profile this many calls")
    parser.add_argument("--out", type=Path, default=RESULTS / "lm_overhead.json")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    server, url = start_fake_server()
    try:
        load_before = os.getloadavg()[0]
        figures = measure(url, args.calls)
        load_after = os.getloadavg()[0]
        if args.profile:
            profile(url, args.profile)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)

    from importlib.metadata import version

    report = {"calls_per_measurement": args.calls, "figures": figures,
              "load_average_1min": [round(load_before, 2), round(load_after, 2)], "cpus": os.cpu_count(),
              "machine": platform.platform(), "python": platform.python_version(),
              "versions": {name: version(name) for name in ("litellm", "openai", "httpx")},
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\n{args.calls} calls each; load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")
    print("| path | CPU ms per call (process) | of which calling thread | wall ms per call |")
    print("|---|---|---|---|")
    for name, f in figures.items():
        print(f"| {name} | {f['cpu_ms_per_call']} | {f['calling_thread_cpu_ms_per_call']} | {f['wall_ms_per_call']} |")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
