"""Run an optimization of a program in the foreground, with a progress bar, and print its change request.

The run is the same record a web-started run is (row, trials, audit events, version, change request); only
the executor differs: this process, instead of a worker.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.actions import reviews as review_actions
from governance.actions import runs as run_actions
from governance.errors import GovernanceError
from governance.models import OptimizationRun, Program, RunStatus
from governance.runner import change_request_of, execute_run, worker_name


class Command(BaseCommand):
    help = ("Optimize a program in the foreground: starts a run (recorded like any other), shows a progress bar, "
            "and prints the change request it opens. The model's API key comes from GOVERNANCE_LM_API_KEY.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program_slug")
        parser.add_argument("--preset", default="light", help="light, medium or heavy (default light)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--actor", help="username the run is started as (author role, member); "
                                            "default: the program's owner")
        parser.add_argument("--num-trials", type=int, help="trials to complete (default: the preset's)")
        parser.add_argument("--max-calls", type=int, help="hard cap on model calls of the search")
        parser.add_argument("--max-tokens", type=int, help="hard cap on tokens of the search")
        parser.add_argument("--max-usd", type=float, help="hard cap on cost of the search, in USD")
        parser.add_argument("--model", help="litellm model string (default: the program's)")
        parser.add_argument("--api-base", help="endpoint base URL for the model")

    def handle(self, *args: Any, **options: Any) -> None:
        program = _program(options["program_slug"])
        actor = _user(options["actor"]) if options["actor"] else program.owner
        overrides = {key: options[opt] for key, opt in (("model", "model"), ("api_base", "api_base")) if options[opt]}
        try:
            run = run_actions.start_run(program, actor=actor, preset=options["preset"], seed=options["seed"],
                                        num_trials=options["num_trials"], max_calls=options["max_calls"],
                                        max_tokens=options["max_tokens"], max_usd=options["max_usd"],
                                        lm_config=overrides or None, enqueue=False)
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"run {run.pk} of {program.slug} started by {actor.get_username()} "
                          f"({run.config['preset']}, seed {run.config['seed']}, model {run.config['task_lm']['model']})")
        self._execute(run)
        self._report(run)

    def _execute(self, run: OptimizationRun) -> None:
        from tqdm import tqdm  # start-up cost: only this command draws a progress bar

        with tqdm(total=run.config["num_trials"], desc=f"run {run.pk}", unit="trial", file=self.stderr._out,
                  dynamic_ncols=True) as bar:
            def on_trial(record: Any, outcome: Any) -> None:
                bar.update(1)
                best = "-" if record.best_score is None else f"{record.best_score:.3f}"
                bar.set_postfix_str(f"best {best}, last {record.state}")

            execute_run(run.pk, worker_name=worker_name("cli"), on_trial=on_trial)

    def _report(self, run: OptimizationRun) -> None:
        run.refresh_from_db()
        summary = (f"run {run.pk} {run.status}: {run.stop_reason or '-'}; {run.trials.count()} trials, "
                   f"{run.calls} calls ({run.cached_calls} cached), {run.prompt_tokens + run.completion_tokens} "
                   f"tokens, ${run.cost_usd:.4f}, {run.wall_seconds:.1f}s")
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"{summary}\n{run.error}".strip())
        self.stdout.write(summary)
        cr = change_request_of(run)
        if cr is None:  # complete_run writes both or neither; this would be a bug worth shouting about
            raise CommandError(f"run {run.pk} succeeded but opened no change request")
        candidate, production = cr.candidate_evaluation, cr.baseline_evaluation
        self.stdout.write(f"change request {cr.pk}: {cr.title} [{cr.status}]")
        self.stdout.write(f"  version {cr.version.number} (draft in review, hash {cr.version.content_hash[:12]})")
        if candidate is not None and production is not None and None not in (candidate.score, production.score):
            self.stdout.write(f"  test: candidate {candidate.score:.3f}, production {production.score:.3f} "
                              f"({candidate.score - production.score:+.3f}) on {candidate.examples} examples, "
                              f"{candidate.errors} errors (system evaluations {candidate.pk} and {production.pk})")
        recommendation = review_actions.recommendation_text(cr.comparison)
        self.stdout.write(f"  recommended: {'yes' if cr.recommended else 'no'}; {recommendation}")


def _program(slug: str) -> Program:
    try:
        return Program.objects.select_related("owner").get(slug=slug)
    except Program.DoesNotExist:
        raise CommandError(f"no program with slug {slug!r}") from None


def _user(username: str) -> Any:
    try:
        return get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user {username!r}") from None
