"""Set up the quick-start demo through the real actions: roles, signing key, users, the support-ticket program,
its datasets, and a reviewed, approved and released baseline version.

Honest by construction: the baseline (v1, the program's hand-written instructions) is scored on the val and
test sets by the program's own model, goes through a change request, is approved by two reviewers who re-enter
their passwords, and is released to production by the releaser. Then the author runs a light optimization in
the foreground (`manage.py optimize`, with a progress bar), which leaves a change request waiting for review.
Nothing is written around the actions, so the demo's audit trail is the trail a real deployment would have.

Idempotent: run it again and it keeps the data, starts no second run while a change request waits, and prints
the users again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.actions import accounts
from governance.actions import datasets as dataset_actions
from governance.actions import programs as program_actions
from governance.actions import releases as release_actions
from governance.actions import reviews as review_actions
from governance.actions import runs as run_actions
from governance.actions import versions as version_actions
from governance.errors import GovernanceError
from governance.evaluator import finish_pending
from governance.models import ChangeRequest, OptimizationRun, Program, PromptVersion, VersionStatus

DEMO_DIR = Path(settings.BASE_DIR) / "demo" / "support_tickets"
SLUG = "support-triage"
FAST_TRIALS = 4

# username -> (first name, last name, roles). Printed names appear on signatures and in the audit trail.
DEMO_USERS: dict[str, tuple[str, str, list[str]]] = {
    "author": ("Alice", "Martin", ["author"]),
    "reviewer1": ("Ravi", "Patel", ["reviewer"]),
    "reviewer2": ("Sofia", "Rossi", ["reviewer"]),
    "releaser": ("Lena", "Park", ["releaser"]),
    "auditor": ("Omar", "Haddad", ["auditor"]),
    "admin": ("Ada", "Admin", ["admin"]),
}



def demo_password(username: str) -> str:
    """The demo users' passwords: fixed and printed, because this is a local demo (never for production)."""
    return f"{username}-demo-pass"


class Command(BaseCommand):
    help = ("Create the quick-start demo through the real actions: users, the support-ticket program and its "
            "datasets, and baseline v1 approved by two reviewers and released to production.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=None,
                            help=f"LM for the program (default: {settings.GOVERNANCE_DEFAULT_MODEL}).")
        parser.add_argument("--api-base", default=None, help="api_base of an OpenAI-compatible endpoint.")
        parser.add_argument("--no-run", action="store_true",
                            help="Do not start the demo optimization run (the author can start one in the portal).")
        parser.add_argument("--fast", action="store_true", default=os.environ.get("DEMO_FAST") == "1",
                            help=f"Fewer trials ({FAST_TRIALS}) for a quick check (default when DEMO_FAST=1).")

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("generate_audit_key", if_missing=True, stdout=self.stdout)  # every audit event is sealed
        accounts.setup_role_groups()
        self._signing_key()
        users = self._users()
        program = Program.objects.filter(slug=SLUG).first()
        if program is None:
            program = self._program(users, options)
            self._baseline(program, users)
        else:
            self.stdout.write(f"demo program {SLUG!r} already exists; kept as it is")
        if not options["no_run"]:
            self._optimize(program, fast=options["fast"])
        call_command("audit_checkpoint", stdout=self.stdout)  # the portal's audit page shows its status
        self._print_users()

    # --- steps ----------------------------------------------------------------------------------------------

    def _signing_key(self) -> None:
        if settings.GOVERNANCE_SIGNING_KEY_PEM or Path(settings.GOVERNANCE_SIGNING_KEY_PATH).exists():
            self.stdout.write("export signing key: present")
            return
        call_command("generate_signing_key", stdout=self.stdout)

    def _users(self) -> dict[str, Any]:
        model = get_user_model()
        users = {}
        for username, (first, last, roles) in DEMO_USERS.items():
            user = model.objects.filter(username=username).first()
            if user is None:
                user = accounts.create_user(actor=None, username=username, password=demo_password(username),
                                              roles=roles, first_name=first, last_name=last,
                                              email=f"{username}@example.com")
                if "admin" in roles:  # the read-only Django admin needs staff status (users are not governed)
                    model.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
                self.stdout.write(f"created user {username} ({', '.join(roles)})")
            users[username] = user
        return users

    def _program(self, users: dict[str, Any], options: dict[str, Any]) -> Program:
        spec = json.loads((DEMO_DIR / "program.json").read_text())
        lm_config: dict[str, Any] = {"model": options["model"] or settings.GOVERNANCE_DEFAULT_MODEL}
        if options["api_base"]:
            lm_config["api_base"] = options["api_base"]
        program = program_actions.create_program(
            actor=users["author"], slug=SLUG, name="Support ticket triage", spec=spec, metric="choice",
            lm_config=lm_config, description=spec.get("description", ""),
            members=[users["reviewer1"], users["reviewer2"], users["releaser"]])
        for split in ("train", "val", "test"):
            path = DEMO_DIR / f"{split}.jsonl"
            dataset = dataset_actions.import_dataset(
                program, actor=users["author"], split=split, name=f"support tickets ({split})",
                rows=path.read_text(encoding="utf-8"), format="jsonl", source_filename=path.name)
            self.stdout.write(f"imported {dataset.row_count} {split} examples (hash {dataset.content_hash[:12]})")
        return program

    def _baseline(self, program: Program, users: dict[str, Any]) -> PromptVersion:
        """v1 = the program's own instructions, evaluated by the system on the test set, approved by two
        reviewers (with the content hash they were shown) and released: the production the run competes with."""
        version = version_actions.create_version(
            program, actor=users["author"], payload=version_actions.initial_payload(program),
            note="Baseline: the program's hand-written instructions, zero-shot.")
        cr = review_actions.open_change_request(
            version, actor=users["author"], title="Baseline: hand-written instructions",
            description="The first production version, before any optimization.", ticket_ref="DEMO-1", impact="low")
        started = time.monotonic()
        finish_pending([cr.candidate_evaluation, cr.baseline_evaluation])
        cr.refresh_from_db()
        evaluation = cr.candidate_evaluation
        self.stdout.write(f"system evaluation {evaluation.pk}: v1 scores {evaluation.score or 0:.1%} on "
                          f"{evaluation.examples} test examples ({evaluation.status}, "
                          f"{time.monotonic() - started:.1f} s with {evaluation.lm_config.get('model')})")
        try:
            for reviewer in ("reviewer1", "reviewer2"):
                review_actions.approve_change_request(
                    cr, actor=users[reviewer], password=demo_password(reviewer), content_hash=version.content_hash,
                    reason="Baseline reviewed for the demo.")
                cr.refresh_from_db()
            version.refresh_from_db()
            release_actions.release_version(version, actor=users["releaser"], label="production",
                                            reason="Baseline release of the hand-written prompt.")
        except GovernanceError as exc:
            raise CommandError(f"demo baseline could not be approved and released: {exc}") from exc
        assert version.status == VersionStatus.APPROVED
        self.stdout.write(f"v1 approved by {users['reviewer1'].get_full_name()} and "
                          f"{users['reviewer2'].get_full_name()}, released to production by "
                          f"{users['releaser'].get_full_name()}")
        return version

    def _optimize(self, program: Program, *, fast: bool) -> None:
        """A light optimization run by the author, in the foreground with a progress bar (manage.py optimize),
        so that a change request waits for review. Skipped while one is open or a run is active."""
        waiting = ChangeRequest.objects.filter(program=program, version__run__isnull=False,
                                               status__in=version_actions.ACTIVE_CR_STATUSES).first()
        active = OptimizationRun.objects.filter(program=program, status__in=run_actions.ACTIVE_RUN_STATUSES).first()
        if waiting is not None:
            self.stdout.write(f"change request {waiting.pk} from a run already waits for review; no new run")
            return
        if active is not None:
            self.stdout.write(f"run {active.pk} is {active.status}; no new run")
            return
        options: dict[str, Any] = {"preset": "light", "seed": 0, "actor": "author"}
        if fast:
            options["num_trials"] = FAST_TRIALS
        self.stdout.write(f"optimizing {program.slug} on {program.lm_config.get('model')} (light preset"
                          f"{f', {FAST_TRIALS} trials' if fast else ''}); the progress bar shows the trials")
        call_command("optimize", program.slug, stdout=self.stdout, stderr=self.stderr, **options)

    def _print_users(self) -> None:
        self.stdout.write("")
        self.stdout.write("Demo users (local demo only; passwords are fixed):")
        for username, (first, last, roles) in DEMO_USERS.items():
            self.stdout.write(f"  {username:<10} {demo_password(username):<22} {first} {last} ({', '.join(roles)})")

