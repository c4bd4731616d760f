"""The API's JSON parser: bounded and Unicode-safe before any view, serializer or database sees the data.

DRF's JSONParser hands `json.load` whatever arrives: 1,000 nested arrays end in a RecursionError (a 500), a
``"\\ud800"`` escape becomes a lone surrogate that cannot be encoded back to UTF-8 (a 500 wherever it is echoed
or stored), and ``"\\u0000"`` is a NUL that PostgreSQL refuses in text and jsonb. This parser refuses all three
with a 400 that names the top-level field holding the bad value. Form and multipart bodies get the same text
check on their fields (a NUL in a form field once reached PostgreSQL as a 500). Registered in
settings.REST_FRAMEWORK.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import DataAndFiles, FormParser, JSONParser, MultiPartParser

MAX_JSON_DEPTH = 32  # deeper than any program spec or payload; the serializers apply the same bound per field
NON_FIELD = "non_field_errors"


class BoundedJSONParser(JSONParser):
    """JSON bodies with at most MAX_JSON_DEPTH levels, no NUL characters and no unpaired surrogates."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(f"JSON parse error - the body is not valid UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise exceptions.ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        check_json_value(data)
        return data


class CheckedFormParser(FormParser):
    """URL-encoded forms whose field names and values are safe text."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        check_form_fields(data)
        return data


class CheckedMultiPartParser(MultiPartParser):
    """Multipart bodies whose (non-file) field names and values are safe text; file contents are the importer's
    to check (datasets report the row and reason)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> DataAndFiles:
        parsed = super().parse(stream, media_type, parser_context)
        check_form_fields(parsed.data)
        return parsed


def check_form_fields(data: Any) -> None:
    for key, values in data.lists():
        problem = _text_problem(key) or next((p for v in values if (p := _text_problem(v))), None)
        if problem:
            field = key if _text_problem(key) is None else NON_FIELD
            raise exceptions.ValidationError({field: [problem]})


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def check_json_value(data: Any) -> None:
    """Raise a 400 ValidationError naming the top-level field of the first value that is too deep or not safe
    text (iterative: the check itself must not recurse on hostile input)."""
    items = data.items() if isinstance(data, dict) else [(NON_FIELD, data)]
    for key, value in items:
        field = key if _text_problem(key) is None else NON_FIELD
        problem = _text_problem(key) or _first_problem(value)
        if problem:
            raise exceptions.ValidationError({field: [problem]})


def _first_problem(value: Any) -> str | None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return problem
        elif isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((inner, depth + 1) for inner in item.values())
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (an unpaired surrogate escape such as \\ud800 is not)"
    return None


def safe_text(text: str) -> str:
    """`text` with anything UTF-8 cannot encode (lone surrogates) replaced, so echoing it never fails."""
    return text.encode("utf-8", "replace").decode("utf-8")
