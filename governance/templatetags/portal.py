"""Template helpers of the reviewer portal: diffs, UTC times, scores and deltas, badges and the trial chart."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from governance.diffing import DELETE, INSERT, Segment
from governance.permissions import has_role as _has_role
from governance.permissions import user_roles

register = template.Library()


@register.filter
def diff(segments: Iterable[Segment]) -> SafeString:
    """One side of a word diff as HTML: deletions in <del>, insertions in <ins>, the rest as text."""
    parts = []
    for segment in segments or ():
        text = escape(segment.text)
        if segment.op == DELETE:
            parts.append(f'<del class="diff-del"><span class="sr-only">[removed: </span>{text}'
                         f'<span class="sr-only">]</span></del>')
        elif segment.op == INSERT:
            parts.append(f'<ins class="diff-ins"><span class="sr-only">[added: </span>{text}'
                         f'<span class="sr-only">]</span></ins>')
        else:
            parts.append(text)
    return mark_safe("".join(parts))


@register.filter
def utc(value: datetime | str | None) -> SafeString | str:
    """A <time> element showing UTC to the second in ISO 8601: 2026-01-02T09:00:05Z (the same text everywhere:
    pages, CSV, API)."""
    if not value:
        return "\u2014"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    iso = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return format_html('<time datetime="{}">{}</time>', iso, iso)


@register.filter
def pct(value: Any, digits: int = 1) -> str:
    """0.8123 -> "81.2%"; None or non-numbers -> an em dash."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "\u2014"
    return f"{value * 100:.{int(digits)}f}%"


@register.filter
def delta(value: Any) -> SafeString | str:
    """A score difference in percentage points, signed and coloured (with a word, not colour alone)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "\u2014"
    points = value * 100
    if abs(points) < 0.05:
        return mark_safe('<span class="delta delta-zero">\u00b10.0 pts</span>')
    css, word = ("delta-up", "better") if points > 0 else ("delta-down", "worse")
    text = f"{'+' if points > 0 else chr(0x2212)}{abs(points):.1f} pts"
    return format_html('<span class="delta {}">{} <span class="sr-only">({})</span></span>', css, text, word)


@register.filter
def short_hash(value: Any, length: int = 12) -> str:
    return str(value or "")[: int(length)]


@register.filter
def money(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "\u2014"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


@register.filter
def duration(seconds: Any) -> str:
    """Seconds as "1 h 02 min", "3 min 20 s" or "45 s"; None -> an em dash."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        return "\u2014"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def pretty_json(value: Any) -> str:
    if value in (None, "", {}, []):
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def is_dict(value: Any) -> bool:
    return isinstance(value, dict)


ALARMING_ACTIONS = ("signature.failed", "release.rolled_back", "release.kill_switch_on", "run.failed",
                    "review.rejected", "change_request.rejected", "drift.")


@register.filter
def is_alarming(action: str) -> bool:
    """Audit actions an auditor should notice at a glance (failed signatures, rollbacks, kill switch, ...)."""
    return str(action).startswith(ALARMING_ACTIONS)


@register.filter
def has_role(user: Any, role: str) -> bool:
    """`{% if user|has_role:"auditor" %}`: the role (admins have every role)."""
    return _has_role(user, role)


@register.filter
def role_names(user: Any) -> str:
    return ", ".join(sorted(user_roles(user))) or "no role"


@register.simple_tag
def failing_example(example: dict[str, Any]) -> SafeString:
    """One failing example as a list item: inputs, expected and predicted outputs, where and why.

    Built in Python with escape() rather than an included template: a change request lists up to 100.
    """
    if not isinstance(example.get("inputs"), dict):
        rows = "<br>".join(f'<span class="k">{escape(k)}:</span> {escape(v)}' for k, v in example.items())
        return mark_safe(f"<li>{rows}</li>")
    inputs = "".join(f'<span class="k">{escape(k)}:</span> {escape(v)}<br>' for k, v in example["inputs"].items())
    expected = escape(", ".join(str(v) for v in (example.get("expected") or {}).values()))
    predicted = escape(", ".join(str(v) for v in (example.get("predicted") or {}).values() if v not in (None, ""))
                       or "(no answer)")
    where = (f' <span class="muted small">\u00b7 {escape(example["split"])} #{escape(example.get("index", ""))}</span>'
             if example.get("split") else "")
    error = example.get("error")
    error_html = f'<br><span class="small muted">error: {escape(_truncate(str(error), 160))}</span>' if error else ""
    return mark_safe(f'<li>{inputs}<span class="k">expected:</span> <strong>{expected}</strong> \u00b7 '
                     f'<span class="k">got:</span> <strong>{predicted}</strong>{where}{error_html}</li>')


def _truncate(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "\u2026"


@register.simple_tag
def badge(status: str, label: str | None = None) -> SafeString:
    """A status badge whose text carries the meaning; the colour only repeats it."""
    text = label or str(status).replace("_", " ").capitalize()
    return format_html('<span class="badge badge-{}">{}</span>', status, text)


# --- the trial chart ---------------------------------------------------------------------------------------

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 40, 40


@register.simple_tag
def trial_chart(trials: list[Any], planned: int | None = None, chart_id: str = "trial-chart",
                val_rows: int | None = None) -> SafeString:
    """A server-rendered SVG: each trial's score (dots) and the best full-validation score so far (line).
    `val_rows`: how many validation rows a full-validation trial scores (named in the legend).

    `trials` are Trial rows (number, kind, state, score) in trial order. Minibatch (partial) scores are hollow,
    full-validation scores filled; pruned trials are drawn lower-opacity.
    """
    scored = [t for t in trials if t.score is not None]
    last = max([t.number for t in trials] + [(planned or 0) - 1, 1])
    first = min([t.number for t in trials] + [0])
    span = max(last - first, 1)

    def x(number: float) -> float:
        return LEFT + (number - first) / span * (WIDTH - LEFT - RIGHT)

    def y(score: float) -> float:
        return TOP + (1 - max(0.0, min(1.0, score))) * (HEIGHT - TOP - BOTTOM)

    parts = [(f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
              f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
              f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'),
             f'<title id="{escape(chart_id)}-title">Trial scores and best score so far</title>',
             f'<desc id="{escape(chart_id)}-desc">{escape(_chart_summary(trials, scored))}</desc>']
    parts += _grid(x, y, first, last)
    parts += _best_line(trials, x, y)
    for t in scored:
        full = t.kind == "full"
        css = "pt-full" if full else "pt-mini"
        if t.state == "pruned":
            css += " pt-pruned"
        parts.append(f'<circle class="{css}" cx="{x(t.number):.1f}" cy="{y(t.score):.1f}" r="{5 if full else 4}">'
                     f'<title>trial {t.number} ({escape(t.kind)}, {escape(t.state)}): {t.score * 100:.1f}% on '
                     f'{t.examples} examples</title></circle>')
    parts += _legend(val_rows)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _chart_summary(trials: list[Any], scored: list[Any]) -> str:
    if not scored:
        return "No trial has been scored yet."
    full = [t.score for t in scored if t.kind == "full"]
    best = max(full) if full else max(t.score for t in scored)
    return (f"{len(trials)} trials; best {'full-validation' if full else 'minibatch'} score "
            f"{best * 100:.1f}%.")


def _grid(x: Any, y: Any, first: int, last: int) -> list[str]:
    parts = []
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                     f'{int(tick * 100)}%</text>')
    step = max(1, round((last - first) / 10))
    for number in range(first, last + 1, step):
        parts.append(f'<text class="axis" x="{x(number):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                     f'text-anchor="middle">{number}</text>')
    parts.append(f'<text class="axis-title" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 6}" '
                 f'text-anchor="middle">trial number</text>')
    parts.append(f'<line class="axis-line" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>')
    parts.append(f'<line class="axis-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
                 f'y2="{HEIGHT - BOTTOM}"/>')
    return parts


def _best_line(trials: list[Any], x: Any, y: Any) -> list[str]:
    """A step line through the running maximum of full-validation scores (all scores if none is full)."""
    use_full = any(t.kind == "full" and t.score is not None for t in trials)
    best: float | None = None
    points: list[tuple[float, float]] = []
    for t in trials:
        if t.score is None or (use_full and t.kind != "full"):
            if best is not None:
                points.append((x(t.number), y(best)))
            continue
        if best is not None:
            points.append((x(t.number), y(best)))
        best = t.score if best is None else max(best, t.score)
        points.append((x(t.number), y(best)))
    if not points:
        return []
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    return [f'<polyline class="best-line" points="{path}"/>']


def _legend(val_rows: int | None = None) -> list[str]:
    lx, ly = LEFT, 8
    full = f"full validation ({val_rows} rows)" if val_rows else "full validation"
    shift = 56 if val_rows else 0  # room for the row count
    return [
        f'<g class="legend" transform="translate({lx},{ly})">',
        f'<circle class="pt-full" cx="4" cy="7" r="5"/><text x="14" y="11">{escape(full)}</text>',
        f'<circle class="pt-mini" cx="{118 + shift}" cy="7" r="4"/><text x="{128 + shift}" y="11">minibatch (partial)</text>',
        f'<line class="best-line" x1="{256 + shift}" x2="{280 + shift}" y1="7" y2="7"/><text x="{286 + shift}" y="11">best so far</text>',
        "</g>",
    ]
