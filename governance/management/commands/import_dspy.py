"""Import a DSPy saved-program JSON as a new draft version of a program (an audited action, like the API's)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.actions import dspy_files as dspy_actions
from governance.errors import GovernanceError
from governance.models import Program
from optimizer import SpecError, read_dspy_bytes


class Command(BaseCommand):
    help = ("Create a draft version of a program from what dspy's module.save('x.json') wrote: its instructions, "
            "field prefixes and descriptions, reasoning fields, demos and lm settings. The file must fit the "
            "program's predictors and fields; the draft is authored by --actor (an author and member).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program_slug")
        parser.add_argument("file", help="the dspy .json file")
        parser.add_argument("--actor", required=True, help="username the draft is created by (author role)")
        parser.add_argument("--note", default="", help="the version's note (default: names the file)")

    def handle(self, *args: Any, **options: Any) -> None:
        program = _program(options["program_slug"])
        actor = _user(options["actor"])
        try:
            content = read_dspy_bytes(options["file"])
            version = dspy_actions.import_dspy_version(program, actor=actor, content=content,
                                                       filename=options["file"], note=options["note"])
        except SpecError as exc:
            raise CommandError(str(exc)) from None
        except GovernanceError as exc:
            raise CommandError(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None
        predictors = ", ".join(p["name"] for p in version.payload["program"]["predictors"])
        self.stdout.write(f"created draft version {version.number} of {program.slug} from {options['file']} "
                          f"(predictors {predictors}; lm {version.payload['lm']['model']}; "
                          f"hash {version.content_hash})")


def _program(slug: str) -> Program:
    try:
        return Program.objects.get(slug=slug)
    except Program.DoesNotExist:
        raise CommandError(f"no program with slug {slug!r}") from None


def _user(username: str) -> Any:
    try:
        return get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user {username!r}") from None
