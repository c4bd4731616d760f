"""Test data for the export, command, admin and PostgreSQL export tests, built through the real actions.

Imported as `tests.governance.export_helpers` (also by tests/pg/, which runs in a child pytest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from governance.actions.datasets import import_dataset
from governance.actions.programs import create_program
from governance.actions.roles import create_user_with_roles
from governance.actions.versions import create_version, initial_payload
from governance.evaluator import finish_pending
from governance.models import ChangeRequest, OptimizationRun, Program, PromptVersion, RunStatus, VersionOrigin
from optimizer.bundle import generate_private_key, private_key_pem
from tests.optimizer.fake_lm import FakeLMServer
from tests.optimizer.simulated import SimulatedClassifier, load_rows

PASSWORD = "Correct-Horse-Battery-9"
SPEC = {
    "name": "support_triage",
    "description": "Route a customer support ticket to the team that handles it.",
    "predictors": [{
        "name": "classify", "kind": "predict",
        "signature": {
            "instructions": "Classify the support ticket into one category.",
            "inputs": [{"name": "ticket", "type": "str", "description": "The customer's message.",
                        "prefix": "Ticket:"}],
            "outputs": [{"name": "category", "type": "choice", "description": "The team.", "prefix": "Category:",
                         "choices": ["billing", "refund", "shipping", "technical"]}],
        },
        "demos": [],
    }],
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Import into a test module to hash test passwords with MD5 (PBKDF2 costs about a second per user)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Team:
    author: Any
    starter: Any
    reviewer1: Any
    reviewer2: Any
    releaser: Any
    auditor: Any
    outsider: Any
    program: Program


def signing_key_settings(tmp_path: Path) -> override_settings:
    """Settings pointing at a fresh signing key file under tmp_path (no key from the environment)."""
    path = tmp_path / "signing_key.pem"
    path.write_bytes(private_key_pem(generate_private_key()))
    path.chmod(0o600)
    return override_settings(GOVERNANCE_SIGNING_KEY_PATH=path, GOVERNANCE_SIGNING_KEY_PEM="")


_LM_SERVER: FakeLMServer | None = None
EVAL_MODEL = "text-completion-openai/fake"


def lm_server() -> FakeLMServer:
    """The loopback model the system evaluates these programs with (one per process, like a real endpoint)."""
    global _LM_SERVER
    if _LM_SERVER is None:
        _LM_SERVER = FakeLMServer(SimulatedClassifier()).start()
    return _LM_SERVER


def test_rows(n: int = 6) -> list[dict[str, Any]]:
    """Demo test tickets whose categories are among SPEC's choices."""
    choices = set(SPEC["predictors"][0]["signature"]["outputs"][0]["choices"])
    return [row for row in load_rows("test") if row["category"] in choices][:n]


def evaluate(cr: ChangeRequest) -> ChangeRequest:
    """Run the system evaluations the change request waits for, as the job backend would."""
    cr.refresh_from_db()
    finish_pending([e for e in (cr.candidate_evaluation, cr.baseline_evaluation) if e is not None])
    cr.refresh_from_db()
    return cr


def make_team(slug: str = "triage") -> Team:
    def user(name: str, roles: list[str], first: str, last: str) -> Any:
        return create_user_with_roles(actor=None, username=f"{name}-{slug}", password=PASSWORD, roles=roles,
                                      first_name=first, last_name=last)

    author = user("author", ["author"], "Alice", "Author")
    starter = user("starter", ["author"], "Sam", "Starter")
    reviewer1 = user("rev1", ["reviewer"], "Ada", "Reviewer")
    reviewer2 = user("rev2", ["reviewer"], "Bo", "Compliance")
    releaser = user("rel", ["releaser"], "Cy", "Releaser")
    auditor = user("aud", ["auditor"], "Dee", "Auditor")
    outsider = user("out", ["author"], "Olly", "Outsider")
    program = create_program(actor=author, slug=slug, name="Ticket triage", spec=SPEC,
                             lm_config={"model": EVAL_MODEL, "api_base": lm_server().url},
                             members=[starter, reviewer1, reviewer2, releaser])
    import_dataset(program, actor=author, split="test", name="test tickets", rows=test_rows())
    return Team(author, starter, reviewer1, reviewer2, releaser, auditor, outsider, program)


def optimizer_run(team: Team, *, seed: int = 7) -> OptimizationRun:
    """A finished run to hang provenance on. Runs are written by the optimizer task, not by an action."""
    return OptimizationRun.objects.create(
        program=team.program, status=RunStatus.SUCCEEDED, started_by=team.starter, study_name="triage-study-1",
        config={"preset": "light", "seed": seed,
                "task_lm": {"model": "local/gemma-3-270m", "api_key": "sk-must-not-leak"},
                "proposal_lm": {"model": "local/gemma-3-270m"}},
        dataset_hashes={"train": "a" * 64, "val": "b" * 64, "test": "c" * 64})


def draft(team: Team, *, instructions: str = "Route the ticket to one team.",
          run: OptimizationRun | None = None) -> PromptVersion:
    payload = initial_payload(team.program)
    payload["program"]["predictors"][0]["signature"]["instructions"] = instructions
    payload["program"]["predictors"][0]["demos"] = [{"ticket": "I was charged twice", "category": "billing"}]
    return create_version(team.program, actor=team.author, payload=payload,
                          origin=VersionOrigin.OPTIMIZER if run else VersionOrigin.MANUAL, run=run)


def in_review(team: Team, **kwargs: Any) -> PromptVersion:
    from governance.actions.reviews import open_change_request

    version = draft(team, **kwargs)
    open_change_request(version, actor=team.author, title=f"Review v{version.number}")
    version.refresh_from_db()
    return version


def approved(team: Team, **kwargs: Any) -> PromptVersion:
    """A version approved by two distinct reviewers who re-entered their passwords."""
    from governance.actions.reviews import approve_change_request, open_change_request

    version = draft(team, **kwargs)
    cr = evaluate(open_change_request(version, actor=team.author, title=f"Review v{version.number}"))
    approve_change_request(cr, actor=team.reviewer1, password=PASSWORD, content_hash=version.content_hash)
    cr.refresh_from_db()
    approve_change_request(cr, actor=team.reviewer2, password=PASSWORD, content_hash=version.content_hash)
    version.refresh_from_db()
    assert version.status == "approved", version.status
    return version


def release(team: Team, version: PromptVersion, label: str = "production") -> None:
    from governance.actions.releases import release_version

    release_version(version, actor=team.releaser, label=label, reason=f"ship v{version.number}")
