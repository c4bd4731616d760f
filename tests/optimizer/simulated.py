"""A simulated classifier behind the fake LM server, with known answers, so search tests can assert wins.

It answers a "Ticket: ...\\nCategory:" completion prompt correctly when the prompt shows enough demos (like the
real small model, which gains most from demos), or when the instruction carries the magic phrase; otherwise
it answers a fixed wrong label. Proposal and summary prompts get a short sentence.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo" / "support_tickets"
MAGIC = "exactly one of"


def load_rows(split: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DEMO_DIR / f"{split}.jsonl").read_text().splitlines() if line.strip()]


class SimulatedClassifier:
    def __init__(self, min_demos: int = 14) -> None:
        self.labels = {row["ticket"]: row["category"] for split in ("train", "val", "test")
                       for row in load_rows(split)}
        self.min_demos = min_demos
        self.calls = 0

    def __call__(self, prompt: str, request: dict[str, Any]) -> str:
        self.calls += 1
        if prompt.rstrip().endswith("Instruction:"):
            return " Read the ticket and answer with the category name only, please.\n"
        if "summary of what this dataset" in prompt:
            return " Customer support tickets labeled with the team that handles them.\n"
        if not re.search(r"\nCategory:\s*$", prompt) or "Ticket: " not in prompt:
            return "ok"
        ticket = prompt.rsplit("Ticket: ", 1)[1].rsplit("\nCategory:", 1)[0].strip()
        demos = prompt.count("\nCategory: ") + prompt.startswith("Category: ")
        truth = self.labels.get(ticket, "feedback")
        if demos >= self.min_demos or MAGIC in prompt.split("\n", 1)[0]:
            return f" {truth}\n"
        return " billing\n" if truth != "billing" else " refund\n"


class NearTies(SimulatedClassifier):
    """With enough demos every configuration gets the same 80% right (a fixed fifth of the tickets is always
    wrong): sampled configurations tie, race through the whole validation set and never improve the best."""

    def __call__(self, prompt: str, request: dict[str, Any]) -> str:
        answer = super().__call__(prompt, request)
        ticket = prompt.rsplit("Ticket: ", 1)[-1]
        if "\nCategory:" in ticket and zlib.crc32(ticket.encode()) % 5 == 0:
            return " billing\n" if answer.strip() != "billing" else " refund\n"
        return answer


def with_judge(classifier: Any) -> Any:
    """`classifier`'s answers, and on an LM judge's prompts a verdict: pass when the program's category is the
    expected one."""
    def respond(prompt: str, request: dict[str, Any]) -> str:
        if prompt.rstrip().endswith("Verdict:"):
            expected = prompt.split("Expected answer:\ncategory: ", 1)[1].split("\n", 1)[0]
            got = prompt.split("Program's answer:\ncategory: ", 1)[1].split("\n", 1)[0]
            return f" {'pass' if expected == got else 'fail'}\nReason: {got} against {expected}."
        return classifier(prompt, request)
    return respond
