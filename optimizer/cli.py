"""Command line: `python -m optimizer optimize|evaluate|run|import-dspy|export-dspy ...`.

Every expected failure (bad file, unknown field or metric, unreachable model, a model that failed
--max-consecutive-failures calls in a row) prints one line naming the problem and exits with status 2; a
traceback here is a bug. Failed LM calls are never hidden in a score: both commands print how many there were.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from optimizer.errors import ModelFailing, OptimizerError, SpecError

EXIT_USAGE = 2

METRIC_HELP = ("exact, choice, f1, judge (an LM judge: OPTIMIZER_JUDGE_MODEL, the local model by default), a name "
               "registered in the prompt_governance.metrics entry points, or module:function")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m optimizer", description="MIPRO prompt optimizer.")
    commands = parser.add_subparsers(dest="command", required=True)
    _optimize_parser(commands.add_parser("optimize", help="compile a program's instructions and demos"))
    _evaluate_parser(commands.add_parser("evaluate", help="score a program on a labeled file"))
    _run_parser(commands.add_parser("run", help="run a compiled program on one input"))
    _import_dspy_parser(commands.add_parser("import-dspy", help="read a dspy saved-program JSON into a program"))
    _export_dspy_parser(commands.add_parser("export-dspy", help="write a program as a dspy saved-program JSON"))
    return parser


def _lm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="local/gemma-3-270m", help="litellm model string")
    parser.add_argument("--api-base", default=None, help="endpoint URL, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per call")
    parser.add_argument("--concurrency", type=int, default=4, help="parallel LM calls")
    parser.add_argument("--cache", default=os.environ.get("OPTIMIZER_CACHE", "var/lm_cache.sqlite3"),
                        help="SQLite response cache ('' disables it)")
    parser.add_argument("--max-consecutive-failures", type=int, default=10,
                        help="stop after this many failed LM calls in a row (0: never)")
    parser.add_argument("--context-window", type=int, default=None,
                        help="tokens the model accepts (default: the local model's n_ctx or litellm's model info)")


def _data_arguments(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(flag, required=True, type=Path, help="labeled examples (.jsonl or .csv)")
    parser.add_argument("--limit", type=int, default=None, help="use a sample of this many rows")
    parser.add_argument("--sample-seed", type=int, default=None, help="seed of that sample (default: first rows)")


def _optimize_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--program", required=True, type=Path, help="program spec JSON")
    _data_arguments(parser, "--train")
    parser.add_argument("--val", type=Path, default=None, help="validation file (default: held out from train)")
    parser.add_argument("--metric", default="choice", help=METRIC_HELP)
    _lm_arguments(parser)
    parser.add_argument("--proposal-model", default=None, help="model that writes instructions (default: --model)")
    parser.add_argument("--preset", default="light", choices=["light", "medium", "heavy"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=None, help="override the preset's number of trials")
    parser.add_argument("--patience", type=int, default=None,
                        help="stop after this many trials without a better score (0: never; default: the preset's)")
    parser.add_argument("--zero-shot", action="store_true", help="optimize instructions only")
    parser.add_argument("--labeled-only", action="store_true", help="no bootstrapped demos")
    parser.add_argument("--max-calls", type=int, default=None)
    parser.add_argument("--max-total-tokens", type=int, default=None)
    parser.add_argument("--max-usd", type=float, default=None)
    parser.add_argument("--max-prompt-tokens", type=int, default=None,
                        help="token budget per prompt: demo sets are cut to it (default: the context window only)")
    parser.add_argument("--storage", default=None, help="optuna storage URL (resume with the same --study)")
    parser.add_argument("--study", default=None, help="study name inside --storage")
    parser.add_argument("--out", type=Path, default=Path("compiled.json"))
    parser.add_argument("--report", type=Path, default=None, help="run report JSON (default: <out>.report.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _evaluate_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--program", required=True, type=Path, help="program or compiled program JSON")
    _data_arguments(parser, "--data")
    parser.add_argument("--metric", default="choice", help=METRIC_HELP)
    _lm_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="per-example results JSON")


def _run_parser(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--program", type=Path, help="compiled program JSON")
    source.add_argument("--bundle", type=Path, help="signed export bundle (verified before it runs, with the LM "
                                                    "configuration it was approved for)")
    parser.add_argument("--public-key", default=None,
                        help="with --bundle: the trusted signing key (base64, PEM, or a file holding either)")
    parser.add_argument("--allow-any-signing-key", action="store_true",
                        help="with --bundle and no --public-key: accept a bundle signed by any key (not for "
                             "production; logged)")
    parser.add_argument("--input", required=True, help='JSON object, e.g. \'{"ticket": "..."}\'')
    _lm_arguments(parser)


def _import_dspy_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dspy_file", type=Path, help="what dspy's module.save('x.json') wrote")
    parser.add_argument("--program", type=Path, default=None,
                        help="program spec the file must fit (default: read the spec from the file alone)")
    parser.add_argument("--name", default=None, help="without --program: the new program's name (default: the "
                                                     "file's stem)")
    parser.add_argument("--signature", action="append", default=[], metavar="PREDICTOR=SIGNATURE",
                        help="without --program: a predictor's fields, e.g. 'predict=text -> label: "
                             "choice[a|b]' (dspy does not save which fields are inputs); repeatable")
    parser.add_argument("--out", type=Path, required=True, help="program JSON to write")


def _export_dspy_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--program", required=True, type=Path, help="program or compiled program JSON")
    parser.add_argument("--layout", default="auto", choices=["auto", "bare", "module"],
                        help="bare: a one-predictor program as dspy.Predict/ChainOfThought.load reads it; module: "
                             "one key per predictor; auto: the layout the file was imported in, else bare for one "
                             "predictor")
    parser.add_argument("--model", default=None, help="write lm blocks with this model (default: the LM settings "
                                                      "the program was imported with, else none)")
    parser.add_argument("--temperature", type=float, default=0.0, help="with --model")
    parser.add_argument("--max-tokens", type=int, default=256, help="with --model")
    parser.add_argument("--out", type=Path, required=True, help="dspy .json file to write")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {"optimize": cmd_optimize, "evaluate": cmd_evaluate, "run": cmd_run,
                    "import-dspy": cmd_import_dspy, "export-dspy": cmd_export_dspy}
        return commands[args.command](args)
    except (OptimizerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def load_program(path: Path) -> Any:
    from optimizer.program import Program

    try:
        return Program.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None


def make_lm(args: argparse.Namespace, budget: Any = None, model: str | None = None) -> Any:
    from optimizer.lm import LM, LMConfig

    config = LMConfig(model=model or args.model, api_base=args.api_base, temperature=args.temperature,
                      max_tokens=args.max_tokens, max_concurrency=args.concurrency, cache_path=args.cache or None,
                      max_consecutive_failures=args.max_consecutive_failures, context_window=args.context_window)
    if args.cache:
        Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    return LM(config, budget)


def check_reachable(lm: Any) -> None:
    """One tiny call up front, so an unreachable model is one clear error, not a run of failed examples."""
    lm.complete("Hello", max_tokens=1) if not lm.is_chat else lm.chat([{"role": "user", "content": "Hi"}],
                                                                        max_tokens=1)


def cmd_optimize(args: argparse.Namespace) -> int:
    from optimizer.data import load_examples
    from optimizer.lm import Budget
    from optimizer.metrics import metric_spending_from, resolve_metric
    from optimizer.search import MIPRO, MIPROConfig

    program = load_program(args.program)
    metric = resolve_metric(args.metric)
    trainset = load_examples(args.train, program, limit=args.limit, sample_seed=args.sample_seed)
    valset = load_examples(args.val, program) if args.val else None
    config = MIPROConfig(preset=args.preset, seed=args.seed, num_trials=args.trials, patience=args.patience,
                         zero_shot=args.zero_shot, labeled_only=args.labeled_only, storage=args.storage,
                         study_name=args.study, max_prompt_tokens=args.max_prompt_tokens)
    lm = make_lm(args, Budget(args.max_calls, args.max_total_tokens, args.max_usd))
    # The caps bound the whole run: a proposal model and an LM judge spend from the task model's budget.
    proposal_lm = make_lm(args, lm.shared_budget, model=args.proposal_model) if args.proposal_model else None
    metric = metric_spending_from(metric, lm)
    check_reachable(lm)
    progress = ProgressBar(config.resolved.num_trials, lm, enabled=not args.quiet)
    try:
        with progress:
            result = MIPRO(metric, lm, config, proposal_lm=proposal_lm, callback=progress.update).compile(
                program, trainset, valset)
    except ModelFailing as exc:
        usage = lm.usage()
        print(f"error: run stopped: {exc} ({usage.calls} LM calls sent, {usage.failed_calls} failed; "
              f"{progress.trials} trials; nothing written)", file=sys.stderr)
        return EXIT_USAGE
    write_outputs(args, result)
    return 0


def write_outputs(args: argparse.Namespace, result: Any) -> None:
    compiled = result.program.to_dict()
    compiled.setdefault("metadata", {}).update(
        {"optimizer": "mipro", "preset": args.preset, "seed": args.seed, "val_score": result.best_score,
         "model": args.model, "study": result.study_name})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(compiled, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report_path = args.report or args.out.with_suffix(".report.json")
    report_path.write_text(json.dumps(result.report(), indent=2, ensure_ascii=False, default=str) + "\n",
                           encoding="utf-8")
    usage = result.usage
    # Tokens first: they are what an API bills.
    print(f"best validation score {result.best_score:.4f} after {len(result.trials)} trials "
          f"({result.stop_reason}); {usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens, "
          f"${usage.cost_usd:.4f}; {usage.calls} LM calls, {usage.failed_calls} failed, {usage.cached_calls} cached; "
          f"{result.seconds:.1f}s")
    print(f"wrote {args.out} and {report_path}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from optimizer.data import load_examples
    from optimizer.evaluation import evaluate
    from optimizer.metrics import resolve_metric

    program = load_program(args.program)
    metric = resolve_metric(args.metric)
    examples = load_examples(args.data, program, limit=args.limit, sample_seed=args.sample_seed)
    lm = make_lm(args)
    check_reachable(lm)
    result = evaluate(program, examples, metric, lm)
    usage = lm.usage()
    print(f"score {result.score:.4f} on {len(examples)} examples ({result.error_count} failed predictions: "
          f"{result.lm_errors} LM errors, {result.parse_errors} unparseable answers); "
          f"{usage.calls} LM calls, {usage.failed_calls} failed, {usage.cached_calls} cached")
    if args.out:
        summary = {"score": result.score, "errors": result.error_count, "lm_errors": result.lm_errors,
                   "parse_errors": result.parse_errors}
        args.out.write_text(json.dumps({**summary, "results": [r.to_dict() for r in result.results]},
                                       indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from optimizer.runtime import Runtime

    try:
        inputs = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise SpecError(f"--input is not valid JSON: {exc.msg}") from None
    if not isinstance(inputs, dict):
        raise SpecError("--input must be a JSON object of field values")
    runtime = bundle_runtime(args) if args.bundle else Runtime(load_program(args.program), make_lm(args))
    prediction = runtime.run(inputs)
    print(json.dumps({"outputs": prediction.outputs, "error": prediction.error}, ensure_ascii=False))
    return 0 if prediction.ok else 1


def cmd_import_dspy(args: argparse.Namespace) -> int:
    from optimizer.dspy_compat import import_dspy_state, program_from_dspy, read_dspy_file

    state = read_dspy_file(args.dspy_file)
    if args.program:
        if args.signature or args.name:
            raise SpecError("--signature and --name are for a file read without --program")
        imported = import_dspy_state(state, load_program(args.program))
    else:
        imported = program_from_dspy(state, name=args.name or args.dspy_file.stem,
                                     signatures=_signature_options(args.signature))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(imported.program.to_json() + "\n", encoding="utf-8")
    lm = imported.lm
    lm_text = (f"lm {lm['model']} (temperature {lm['temperature']}, max_tokens {lm['max_tokens']}, {lm['mode']})"
               if lm else "no lm block")
    print(f"read {len(imported.program.predictors)} predictor(s) "
          f"({', '.join(p.name for p in imported.program.predictors)}) in the {imported.layout} layout, {lm_text}; "
          f"wrote {args.out}")
    return 0


def _signature_options(options: list[str]) -> dict[str, str]:
    signatures = {}
    for option in options:
        name, separator, signature = option.partition("=")
        if not separator or not name.strip() or "->" not in signature:
            raise SpecError(f"--signature {option!r} must look like PREDICTOR='inputs -> outputs'")
        signatures[name.strip()] = signature
    return signatures


def cmd_export_dspy(args: argparse.Namespace) -> int:
    from optimizer.dspy_compat import PROGRAM_METADATA_KEY, dumps_dspy_state, export_dspy_state, resolve_layout

    program = load_program(args.program)
    lm = {"model": args.model, "temperature": args.temperature, "max_tokens": args.max_tokens} if args.model \
        else program.metadata.get(PROGRAM_METADATA_KEY, {}).get("lm_settings")
    state = export_dspy_state(program, lm=lm, layout=args.layout)
    if args.out.suffix != ".json":
        raise SpecError(f"--out must end with .json (dspy's load reads JSON by that suffix), got {str(args.out)!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps_dspy_state(state), encoding="utf-8")
    lm_text = f"lm {lm['model']}" if lm else "no lm block"
    print(f"wrote {args.out} ({resolve_layout(program, args.layout)} layout, {lm_text})")
    return 0


def bundle_runtime(args: argparse.Namespace) -> Any:
    """A Runtime of a verified bundle: the pinned key from --public-key, or the explicit opt-out."""
    from optimizer.runtime import Runtime

    key = args.public_key
    if key and Path(key).is_file():
        key = Path(key).read_text(encoding="utf-8")
    overrides = {"api_base": args.api_base} if args.api_base else {}
    return Runtime.from_bundle(args.bundle, trusted_public_key=key, allow_any_signing_key=args.allow_any_signing_key,
                               cache_path=args.cache or None, **overrides)


class ProgressBar:
    """A tqdm bar over trials showing the best score, calls and cost (stderr; silent when disabled)."""

    def __init__(self, total: int, lm: Any, *, enabled: bool) -> None:
        self.total = total
        self.lm = lm
        self.enabled = enabled
        self.bar: Any = None
        self.trials = 0  # trials reported so far, failed ones included

    def __enter__(self) -> Self:
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="trial", desc="optimizing", file=sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, record: Any) -> None:
        self.trials += 1
        if self.bar is None:
            return
        usage = self.lm.usage()
        best = "-" if record.best_score is None else f"{record.best_score:.3f}"
        self.bar.set_postfix_str(f"best={best} calls={usage.calls} cost=${usage.cost_usd:.4f}")
        if record.state != "failed":
            self.bar.update(1)
