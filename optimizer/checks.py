"""Automatic checks of a candidate program, shown to reviewers before they sign.

Each finding names the predictor and what is wrong. They catch what an optimizer (or a hurried author) can do
that a score does not show: an instruction that stopped naming the labels, an empty or cut-off instruction,
score text copied into an instruction, and demos whose answers contradict the labeled data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from optimizer.program import Predictor, Program

ERROR, WARNING = "error", "warning"
# Words a sentence does not end on: an instruction ending on one was most likely cut off mid-sentence.
_DANGLING = {"a", "an", "the", "and", "or", "but", "of", "to", "with", "for", "in", "on", "by", "as", "is", "are",
             "that", "which", "into", "from", "your", "their", "its"}
_SCORE_TEXT = re.compile(r"\b\d{1,3}(?:\.\d+)?\s?%|\b(?:accuracy|score[sd]?|f1|minibatch|validation set|"
                         r"val(?:idation)? score|trial \d+)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    predictor: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def check_candidate(candidate: Program, baseline: Program | None = None,
                    records: Iterable[Mapping[str, Any]] = ()) -> list[Finding]:
    """Findings for every predictor of `candidate`, judged against `baseline` (what production serves) and the
    labeled `records` (dataset rows: input and output fields by name)."""
    labeled = list(records)
    before = {p.name: p for p in baseline.predictors} if baseline else {}
    findings: list[Finding] = []
    for predictor in candidate.predictors:
        findings += instruction_findings(predictor, before.get(predictor.name))
        findings += demo_findings(predictor, labeled)
    return findings


def instruction_findings(predictor: Predictor, baseline: Predictor | None) -> list[Finding]:
    text = predictor.signature.instructions.strip()
    name = predictor.name
    if not text:
        return [Finding("empty_instruction", ERROR, name, "the instruction is empty")]
    findings = []
    if _looks_truncated(text):
        findings.append(Finding("truncated_instruction", WARNING, name,
                                f"the instruction looks cut off: it ends with {text[-30:]!r}"))
    score = _SCORE_TEXT.search(text)
    if score:
        findings.append(Finding("score_text", WARNING, name, f"the instruction contains score-like text "
                                                             f"{score.group(0)!r}: optimizer output leaking in?"))
    if baseline is not None:
        findings += _dropped_labels(predictor, baseline)
    return findings


def _looks_truncated(text: str) -> bool:
    last_word = re.sub(r"[^\w]", "", text.split()[-1]).lower() if text.split() else ""
    unbalanced = text.count("(") != text.count(")") or text.count('"') % 2 == 1 or text.count("`") % 2 == 1
    return text.endswith((",", "...", "…", "-", ";")) or last_word in _DANGLING or unbalanced


def _dropped_labels(predictor: Predictor, baseline: Predictor) -> list[Finding]:
    """Labels of a choice output that the baseline's instruction named and the candidate's no longer does."""
    findings = []
    for output in predictor.signature.outputs:
        if not output.choices:
            continue
        named_before = _named(output.choices, baseline.signature.instructions)
        missing = [c for c in named_before if c not in _named(output.choices, predictor.signature.instructions)]
        if missing:
            findings.append(Finding("labels_dropped", WARNING, predictor.name,
                                    f"the instruction no longer names the {output.name} label(s) "
                                    f"{', '.join(missing)}, which production's instruction names"))
    return findings


def _named(choices: Iterable[str], text: str) -> list[str]:
    lowered = text.lower()
    return [c for c in choices if re.search(rf"(?<!\w){re.escape(c.lower())}(?!\w)", lowered)]


def demo_findings(predictor: Predictor, records: list[Mapping[str, Any]]) -> list[Finding]:
    """Demo answers outside a choice field's labels, or different from the label of the same labeled input."""
    signature = predictor.signature
    by_inputs = {_key(r, signature.input_names): r for r in records if all(n in r for n in signature.input_names)}
    findings = []
    for number, demo in enumerate(predictor.demos, start=1):
        for output in signature.outputs:
            value = demo.get(output.name)
            if value is None:
                continue
            if output.choices and str(value) not in output.choices:
                findings.append(Finding("demo_label_unknown", ERROR, predictor.name,
                                        f"demo {number}: {output.name} {value!r} is not one of the labels"))
            record = by_inputs.get(_key(demo, signature.input_names))
            if record is not None and output.name in record and str(record[output.name]) != str(value):
                findings.append(Finding("demo_contradicts_data", ERROR, predictor.name,
                                        f"demo {number}: {output.name} is {value!r}, but the labeled data says "
                                        f"{record[output.name]!r} for the same input"))
    return findings


def _key(row: Mapping[str, Any], names: list[str]) -> tuple[str, ...]:
    return tuple(" ".join(str(row.get(n, "")).split()).lower() for n in names)
