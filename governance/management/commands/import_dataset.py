"""Import a JSONL or CSV file as a program's dataset, through the same action (and messages) as the API and portal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.actions import datasets as dataset_actions
from governance.errors import GovernanceError
from governance.models import Program, Split


class Command(BaseCommand):
    help = ("Import labeled rows from a .jsonl or .csv file as a new dataset of a program, for --actor (an author "
            "who is a member). Every bad row is named and nothing is imported then, as in the API and the portal.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("program_slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--split", required=True, choices=Split.values)
        parser.add_argument("--name", help="dataset name (default: the file name)")
        parser.add_argument("--actor", required=True, help="username the import is recorded for")

    def handle(self, *args: Any, **options: Any) -> None:
        program = Program.objects.filter(slug=options["program_slug"]).first()
        if program is None:
            raise CommandError(f"no program with slug {options['program_slug']!r}")
        actor = get_user_model().objects.filter(username=options["actor"]).first()
        if actor is None:
            raise CommandError(f"no user {options['actor']!r}")
        path: Path = options["file"]
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
        try:
            dataset = dataset_actions.import_dataset(program, actor=actor, split=options["split"],
                                                     name=options["name"] or path.name, rows=text, format=fmt,
                                                     source_filename=path.name)
        except dataset_actions.BadRows as exc:
            raise CommandError("nothing imported; bad rows:\n" + "\n".join(exc.rows)
                               + (f"\nand {exc.more} more" if exc.more else "")) from None
        except GovernanceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"imported {dataset.row_count} rows into {program.slug} as dataset #{dataset.pk} "
                          f"({dataset.split}, hash {dataset.content_hash})")
