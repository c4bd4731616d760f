"""Export an approved prompt version as a signed bundle file (recorded as an Export and an audit event)."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.actions import exports as export_actions
from governance.errors import GovernanceError
from governance.models import Program, PromptVersion
from optimizer import dumps_bundle


class Command(BaseCommand):
    help = ("Sign and write the export bundle of an approved version. Without --actor the export is recorded "
            "as done by the system (an operator at the command line).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program_slug")
        parser.add_argument("version_number", type=int)
        parser.add_argument("--out", required=True, help="bundle file to write ('-' for standard output)")
        parser.add_argument("--actor", help="username the export is recorded for (must be a program member)")
        parser.add_argument("--label", help="release label the version is exported as (it must serve it)")

    def handle(self, *args: Any, **options: Any) -> None:
        version = _version(options["program_slug"], options["version_number"])
        actor = _user(options["actor"]) if options["actor"] else None
        reason = "" if actor else (f"signed export of version {version.number} from the command line "
                                   f"(OS user {_os_user()}, no acting user)")
        try:
            bundle = export_actions.export_version(version, actor=actor, label=options["label"], reason=reason)
        except (GovernanceError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        text = dumps_bundle(bundle)
        manifest, signature = bundle["manifest"], bundle["signature"]
        summary = (f"exported {manifest['program']['slug']} v{manifest['version']['number']} "
                   f"(hash {manifest['content_hash']}) signed by key {signature['key_fingerprint']}")
        if options["out"] == "-":
            self.stdout.write(text, ending="")
            self.stderr.write(summary)
            return
        try:
            with open(options["out"], "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise CommandError(f"cannot write {options['out']}: {exc} (the export was recorded; run again)") from exc
        self.stdout.write(f"{summary} to {options['out']}")


def _version(slug: str, number: int) -> PromptVersion:
    try:
        program = Program.objects.get(slug=slug)
    except Program.DoesNotExist:
        raise CommandError(f"no program with slug {slug!r}") from None
    try:
        return PromptVersion.objects.select_related("program").get(program=program, number=number)
    except PromptVersion.DoesNotExist:
        raise CommandError(f"program {slug} has no version {number}") from None


def _user(username: str) -> Any:
    try:
        return get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist:
        raise CommandError(f"no user {username!r}") from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
