"""What a change request changes, for reviewers: word-level instruction diffs and demos added or removed.

Pure functions over two version payloads ({"program": <optimizer Program JSON>, "lm": {...}}); no database.
The portal renders the result side by side (production on the left, the candidate on the right).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from optimizer import canonical_json

# Words, runs of whitespace and single punctuation marks: whitespace is kept so the diff re-joins exactly.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)

EQUAL, INSERT, DELETE = "equal", "insert", "delete"


@dataclass(frozen=True)
class Segment:
    """A run of text that is the same on both sides, only in the old text, or only in the new one."""

    op: str  # equal, insert or delete
    text: str


@dataclass(frozen=True)
class TextDiff:
    """A word-level diff: `old` is what the left column shows (equal + delete), `new` the right (equal + insert)."""

    old: tuple[Segment, ...]
    new: tuple[Segment, ...]

    @property
    def changed(self) -> bool:
        return any(s.op != EQUAL for s in (*self.old, *self.new))

    @property
    def words_added(self) -> int:
        return sum(len(s.text.split()) for s in self.new if s.op == INSERT)

    @property
    def words_removed(self) -> int:
        return sum(len(s.text.split()) for s in self.old if s.op == DELETE)


@dataclass
class PredictorDiff:
    """Everything that differs for one predictor between the base (production) and the candidate."""

    name: str
    instructions: TextDiff
    demos_added: list[dict[str, Any]] = field(default_factory=list)
    demos_removed: list[dict[str, Any]] = field(default_factory=list)
    demos_kept: int = 0
    field_changes: list[tuple[str, str, Any, Any]] = field(default_factory=list)  # (field, attribute, old, new)
    only_in: str = ""  # "base" or "candidate" when the predictor exists on one side only

    @property
    def changed(self) -> bool:
        return bool(self.instructions.changed or self.demos_added or self.demos_removed or self.field_changes
                    or self.only_in)


@dataclass
class VersionDiff:
    predictors: list[PredictorDiff]
    lm_changes: list[tuple[str, Any, Any]]  # (key, old, new)

    @property
    def changed(self) -> bool:
        return bool(self.lm_changes) or any(p.changed for p in self.predictors)


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text or "")


def word_diff(old: str, new: str) -> TextDiff:
    """Diff two texts word by word (whitespace and punctuation are their own tokens)."""
    a, b = tokenize(old), tokenize(new)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _append(left, EQUAL, "".join(a[i1:i2]))
            _append(right, EQUAL, "".join(b[j1:j2]))
            continue
        if i2 > i1:
            _append(left, DELETE, "".join(a[i1:i2]))
        if j2 > j1:
            _append(right, INSERT, "".join(b[j1:j2]))
    return TextDiff(tuple(_absorb_whitespace(left)), tuple(_absorb_whitespace(right)))


def _append(segments: list[Segment], op: str, text: str) -> None:
    if not text:
        return
    if segments and segments[-1].op == op:
        segments[-1] = Segment(op, segments[-1].text + text)
    else:
        segments.append(Segment(op, text))


def _absorb_whitespace(segments: list[Segment]) -> list[Segment]:
    """Merge whitespace-only equal runs between two changes into the change, so "a b" reads as one edit."""
    merged: list[Segment] = []
    for i, segment in enumerate(segments):
        between_changes = (segment.op == EQUAL and not segment.text.strip() and 0 < i < len(segments) - 1
                           and segments[i - 1].op != EQUAL and segments[i + 1].op == segments[i - 1].op)
        if between_changes:
            _append(merged, segments[i - 1].op, segment.text)
        else:
            _append(merged, segment.op, segment.text)
    return merged


def _predictors(payload: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    program = (payload or {}).get("program") or {}
    return {p["name"]: p for p in program.get("predictors", []) if isinstance(p, dict) and "name" in p}


def _demo_key(demo: dict[str, Any]) -> str:
    return canonical_json(demo)


def demo_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> tuple[list, list, int]:
    """(added, removed, kept): demos compared by content, order ignored, duplicates counted."""
    remaining: dict[str, int] = {}
    for demo in old:
        remaining[_demo_key(demo)] = remaining.get(_demo_key(demo), 0) + 1
    added, kept = [], 0
    for demo in new:
        key = _demo_key(demo)
        if remaining.get(key):
            remaining[key] -= 1
            kept += 1
        else:
            added.append(demo)
    removed = []
    for demo in old:
        key = _demo_key(demo)
        if remaining.get(key):
            remaining[key] -= 1
            removed.append(demo)
    return added, removed, kept


def _field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """Prefix and description changes of the signature's fields (names and types are fixed by the program)."""
    changes = []
    old_fields = {f["name"]: f for side in ("inputs", "outputs") for f in old.get(side, [])}
    for side in ("inputs", "outputs"):
        for f in new.get(side, []):
            before = old_fields.get(f["name"], {})
            for attribute in ("prefix", "description"):
                if before.get(attribute, "") != f.get(attribute, ""):
                    changes.append((f["name"], attribute, before.get(attribute, ""), f.get(attribute, "")))
    return changes


def version_diff(base: dict[str, Any] | None, candidate: dict[str, Any]) -> VersionDiff:
    """The reviewer's view of `candidate` against `base` (None: no production version yet, all is new)."""
    old, new = _predictors(base), _predictors(candidate)
    diffs = []
    for name in [*new, *(n for n in old if n not in new)]:
        before, after = old.get(name), new.get(name)
        old_sig = (before or {}).get("signature", {})
        new_sig = (after or {}).get("signature", {})
        added, removed, kept = demo_changes(list((before or {}).get("demos", [])), list((after or {}).get("demos", [])))
        diffs.append(PredictorDiff(
            name=name, instructions=word_diff(old_sig.get("instructions", ""), new_sig.get("instructions", "")),
            demos_added=added, demos_removed=removed, demos_kept=kept,
            field_changes=_field_changes(old_sig, new_sig) if before and after else [],
            only_in="" if before and after else ("candidate" if after else "base")))
    old_lm, new_lm = (base or {}).get("lm") or {}, candidate.get("lm") or {}
    lm_changes = [(key, old_lm.get(key), new_lm.get(key)) for key in sorted(set(old_lm) | set(new_lm))
                  if old_lm.get(key) != new_lm.get(key)]
    return VersionDiff(predictors=diffs, lm_changes=lm_changes if base is not None else [])
