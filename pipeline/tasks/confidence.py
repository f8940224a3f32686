"""Per-field confidence from the token log-probabilities of a JSON reply.

A backend that has them returns each generated token's text piece and log-probability
(:attr:`~docvl.pipeline.model.base.Generation.token_logprobs`). :func:`field_confidence` lines the
pieces up with the reply, scans the JSON with a small position-tracking scanner and gives every
leaf value (string, number, true/false/null, empty object or array) the exp of the MEAN
log-probability of the tokens that overlap its characters (a string's characters are those
between its quotes): the geometric mean of the token probabilities, in (0, 1]. Paths use the
grounding items' syntax: ``total``, ``lines[3]``, ``lines[3].amount``.

:func:`record_confidence` is a record's confidence: the minimum over its leaves (values and
provenance alike: ``page`` and ``quote`` are part of what the model claims). :func:`combined`
weighs it with the record's grounding status (:data:`GROUNDING_FACTORS`).

What the numbers mean: how sure the model was of the tokens it wrote, under the distribution it
sampled from (after constrained decoding, so forced tokens count as certain). A ranking signal to
order records for review, NOT a calibrated probability that the value is correct: a model can be
confidently wrong, and a value the schema all but forces scores high.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from docvl.pipeline.result import GroundingStatus
from docvl.pipeline.tasks.jsonparse import JsonParseError, parse_json

#: A record's model confidence is multiplied by its grounding status's factor: evidence found on
#: the cited page keeps it, evidence that cannot be checked (no text layer) costs a little,
#: evidence checked and not found (or no page cited) costs most.
GROUNDING_FACTORS: dict[GroundingStatus, float] = {
    "grounded": 1.0,
    "page_only": 0.8,
    "ungrounded": 0.3,
}
#: Digits kept in the envelope.
DIGITS = 4
#: Opening braces tried when looking for the reply's JSON in the text.
MAX_STARTS = 8

TokenLogprobs = Sequence[tuple[str, float]]
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WS = " \t\n\r"
_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


@dataclass(frozen=True)
class ScoredReply:
    """One accepted reply's data (dumped) with its :func:`field_confidence` (paths into ``data``),
    and the pages whose records of record lists it contributes to the merged result (None: all of
    them; a window that shares a page with the next segment, or a completeness re-ask shown with
    context pages, contributes fewer)."""

    data: Mapping[str, Any]
    confidence: Mapping[str, float] = field(default_factory=dict)
    pages: Container[int] | None = None


class _Misaligned(ValueError):
    """The text is not JSON the scanner can follow."""


class _Scanner:
    """Strict JSON over ``text`` from ``pos``: the value, and every leaf's (path, start, end)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.leaves: list[tuple[str, int, int]] = []

    def _skip(self, pos: int) -> int:
        while pos < len(self.text) and self.text[pos] in _WS:
            pos += 1
        return pos

    def value(self, pos: int, path: str) -> tuple[Any, int]:
        pos = self._skip(pos)
        if pos >= len(self.text):
            raise _Misaligned("unexpected end")
        ch = self.text[pos]
        if ch == "{":
            return self._object(pos, path)
        if ch == "[":
            return self._array(pos, path)
        if ch == '"':
            value, end = self._string(pos)
            # The characters between the quotes; an empty string is its two quotes.
            self.leaves.append((path, pos + 1, end - 1) if end - pos > 2 else (path, pos, end))
            return value, end
        for word, literal in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, pos):
                self.leaves.append((path, pos, pos + len(word)))
                return literal, pos + len(word)
        match = _NUMBER.match(self.text, pos)
        if match is None:
            raise _Misaligned(f"unexpected {ch!r} at {pos}")
        self.leaves.append((path, pos, match.end()))
        return json.loads(match.group()), match.end()

    def _string(self, pos: int) -> tuple[str, int]:
        end = pos + 1
        while end < len(self.text):
            ch = self.text[end]
            if ch == "\\":
                end += 2
                continue
            if ch == '"':
                try:
                    return str(json.loads(self.text[pos : end + 1])), end + 1
                except json.JSONDecodeError as exc:
                    raise _Misaligned(str(exc)) from exc
            end += 1
        raise _Misaligned("unterminated string")

    def _object(self, start: int, path: str) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        pos = self._skip(start + 1)
        if self.text.startswith("}", pos):
            self.leaves.append((path, start, pos + 1))
            return out, pos + 1
        while True:
            pos = self._skip(pos)
            if not self.text.startswith('"', pos):
                raise _Misaligned(f"expected a key at {pos}")
            key, pos = self._string(pos)
            pos = self._skip(pos)
            if not self.text.startswith(":", pos):
                raise _Misaligned(f"expected ':' at {pos}")
            out[key], pos = self.value(pos + 1, f"{path}.{key}" if path else key)
            pos = self._skip(pos)
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith("}", pos):
                return out, pos + 1
            else:
                raise _Misaligned(f"expected ',' or '}}' at {pos}")

    def _array(self, start: int, path: str) -> tuple[list[Any], int]:
        out: list[Any] = []
        pos = self._skip(start + 1)
        if self.text.startswith("]", pos):
            self.leaves.append((path, start, pos + 1))
            return out, pos + 1
        while True:
            item, pos = self.value(pos, f"{path}[{len(out)}]")
            out.append(item)
            pos = self._skip(pos)
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith("]", pos):
                return out, pos + 1
            else:
                raise _Misaligned(f"expected ',' or ']' at {pos}")


def value_spans(text: str) -> list[tuple[str, int, int]]:
    """Every leaf value of the JSON reply in ``text`` as ``(path, start, end)`` character offsets
    (a string's span excludes its quotes). The JSON is the value :func:`parse_json` takes from the
    reply (prose or a code fence around it is skipped); ``[]`` when there is none or the scanner
    cannot follow it."""
    try:
        expected = parse_json(text)
    except JsonParseError:
        return []
    starts = [i for i, ch in enumerate(text) if ch == "{"][:MAX_STARTS]
    for start in starts:
        scanner = _Scanner(text)
        try:
            value, _end = scanner.value(start, "")
        except _Misaligned:
            continue
        if value == expected:
            return scanner.leaves
    return []


def token_spans(text: str, token_logprobs: TokenLogprobs) -> list[tuple[int, int, float]] | None:
    """Each token's ``(start, end, logprob)`` in ``text``; None when the pieces do not spell it.

    A piece that is empty (part of a character split over several tokens, or a special token)
    takes the span of the next non-empty piece, so its log-probability still counts.
    """
    joined = "".join(piece for piece, _ in token_logprobs)
    offset = joined.find(text) if text else -1
    if offset < 0:
        return None
    spans: list[tuple[int, int, float]] = []
    pending: list[float] = []
    pos = -offset
    for piece, logprob in token_logprobs:
        if not piece:
            pending.append(logprob)
            continue
        start, pos = pos, pos + len(piece)
        spans.extend((start, pos, lp) for lp in pending)
        spans.append((start, pos, logprob))
        pending = []
    return spans


def field_confidence(text: str, token_logprobs: TokenLogprobs) -> dict[str, float]:
    """Per leaf value of the JSON reply ``text``: exp(mean log-probability) of the tokens that
    overlap its characters. Empty when there are no log-probabilities or they do not line up with
    the text (the pieces do not spell it, or the JSON cannot be scanned)."""
    if not token_logprobs:
        return {}
    spans = token_spans(text, token_logprobs)
    if spans is None:
        return {}
    ends = [e for _, e, _ in spans]  # non-decreasing, like the starts
    out: dict[str, float] = {}
    for path, start, end in value_spans(text):
        logprobs = []
        for s, _e, lp in spans[bisect_right(ends, start) :]:
            if s >= end:
                break
            logprobs.append(lp)
        if not logprobs or not all(math.isfinite(lp) for lp in logprobs):
            return {}
        out[path] = round(math.exp(min(0.0, sum(logprobs) / len(logprobs))), DIGITS)
    return out


def record_confidence(confidence: Mapping[str, float], path: str) -> float | None:
    """The record at ``path`` (``lines[3]``; ``(root)`` or ``""`` for the whole reply): the minimum
    over its leaves' confidences; None when none is known."""
    if path in ("", "(root)"):
        values = list(confidence.values())
    else:
        values = [
            c
            for p, c in confidence.items()
            if p == path or p.startswith(path + ".") or p.startswith(path + "[")
        ]
    return min(values) if values else None


def combined(model_confidence: float, status: GroundingStatus) -> float:
    """A record's confidence: its model confidence times its grounding status's factor."""
    return round(model_confidence * GROUNDING_FACTORS[status], DIGITS)


def value_at(data: Any, path: str) -> Any:
    """The value at a grounding path (``lines[3]``, ``total``, ``(root)``); None when absent."""
    if path in ("", "(root)"):
        return data
    node = data
    for index, key in _PATH_PART.findall(path):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return None
            node = node[int(index)]
        else:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
    return node
