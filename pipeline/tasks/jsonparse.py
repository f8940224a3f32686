"""Pull the JSON value out of a model reply.

Handles a plain JSON reply, a ```json fenced block, JSON after leading prose (or a ``<think>``
block), trailing junk after a complete value, a UTF-8 BOM, and says clearly what is wrong otherwise:
empty reply, no JSON at all, truncated JSON, or the JSON error with line, column and the text around
it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
#: Start positions tried before giving up (replies with many stray braces in prose).
MAX_STARTS = 50


class JsonParseError(ValueError):
    """The reply holds no usable JSON. ``str(err)`` is written for the model's re-ask feedback
    too."""


def parse_json(text: str, *, expect_object: bool = True) -> Any:
    """The first complete JSON value in ``text`` (an object unless ``expect_object`` is False)."""
    if text is None or not text.strip():
        raise JsonParseError("the reply is empty; expected a JSON object")
    cleaned = _THINK.sub("", text.lstrip("\ufeff")).strip()
    first_error: json.JSONDecodeError | None = None
    candidates = [cleaned] + [m.group(1).strip() for m in _FENCE.finditer(cleaned)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
            continue
        if _acceptable(value, expect_object):
            return value
    decoder = json.JSONDecoder()
    openers = "{" if expect_object else "{["
    starts = [i for i, ch in enumerate(cleaned) if ch in openers][:MAX_STARTS]
    best_error: tuple[int, json.JSONDecodeError] | None = None
    for start in starts:
        try:
            value, _end = decoder.raw_decode(cleaned, start)
        except json.JSONDecodeError as exc:
            if best_error is None or exc.pos - start > best_error[0]:
                best_error = (exc.pos - start, exc)
            continue
        if _acceptable(value, expect_object):
            return value
    if not starts:
        what = "JSON object" if expect_object else "JSON value"
        raise JsonParseError(
            f"no {what} found in the reply (it starts with {_snippet(cleaned, 0)!r})"
        )
    error = best_error[1] if best_error else first_error
    if error is None:
        raise JsonParseError("the reply holds JSON, but no JSON object")
    if error.pos >= len(error.doc.rstrip()) - 1:
        raise JsonParseError(
            f"the JSON is incomplete: it ends before the value is closed ({error.msg} at line "
            f"{error.lineno}, column {error.colno}); the reply may have been cut off"
        )
    raise JsonParseError(
        f"invalid JSON: {error.msg} at line {error.lineno}, column {error.colno} "
        f"(near {_snippet(error.doc, error.pos)!r})"
    )


def _acceptable(value: Any, expect_object: bool) -> bool:
    return isinstance(value, dict) or (not expect_object and isinstance(value, list))


def _snippet(text: str, pos: int, width: int = 40) -> str:
    start = max(0, pos - width // 2)
    return text[start : start + width]
