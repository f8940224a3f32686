"""What the test double reads in a prompt, and how it answers (see
:mod:`docvl.pipeline.dev.double`).

* :func:`read_pages`: the pages of a prompt, by their ``<page N>`` markers, with the lines of their
  text layers (images ignored);
* :func:`extract_commerce` / :func:`extract_tables`: the data of the synth format
  (:mod:`docvl.pipeline.dev.synth`) printed on those pages, records in page order, each citing the
  page it starts on, with its printed line as quote;
* :func:`summarize`, :func:`answer`, :func:`reduce_partials`: minimal summaries and answers citing
  shown pages, and the reduce calls of those two.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docvl.pipeline.dev.printed import (
    CAPTION_RE,
    CELL_SEP,
    CONT_RE,
    LABEL_RE,
    LABELS,
    LINE_FIELD,
    LINE_RE,
    START_RE,
)
from docvl.pipeline.plan.prompt import Part, TextPart

_DOCUMENT_RE = re.compile(r"^<document (\d+): (.*), (\d+) pages>\n?$")
_PAGE_RE = re.compile(r"^<page (\d+)>\n?$")
_QUESTION_RE = re.compile(r"^Question: (.*)$", re.MULTILINE)
TEXT_LAYER = "Text layer:\n"
TRUNCATED = " [...]"
#: Words of a question that say nothing about where the answer is.
_STOP_TEXT = (
    "the and for with what which who whom whose when where why how does did are was were is this "
    "that these those from into onto about there their than then them they have has had document "
    "documents page pages please give tell show list"
)
_STOP_WORDS = frozenset(_STOP_TEXT.split())


@dataclass(frozen=True)
class ShownPage:
    """One page as the double sees it: document number (from the header), page number (from the
    marker) and the non-empty lines of its text layer."""

    doc: int
    page: int
    lines: tuple[str, ...] = ()


@dataclass
class _Pending:
    """The start of a line whose rest may be on the next page."""

    page: ShownPage
    match: re.Match[str]
    line: str


def read_pages(content: Sequence[Part]) -> list[ShownPage]:
    """The pages in ``content``, in prompt order, with their text-layer lines (images ignored)."""
    pages: list[ShownPage] = []
    doc = 1
    for part in content:
        if not isinstance(part, TextPart):
            continue
        text = part.text
        if m := _DOCUMENT_RE.match(text):
            doc = int(m[1])
        elif m := _PAGE_RE.match(text):
            pages.append(ShownPage(doc, int(m[1])))
        elif text.startswith(TEXT_LAYER) and pages and not pages[-1].lines:
            body = text[len(TEXT_LAYER) :].rstrip("\n")
            body = body.removesuffix(TRUNCATED)
            lines = tuple(line.strip() for line in body.splitlines() if line.strip())
            pages[-1] = ShownPage(pages[-1].doc, pages[-1].page, lines)
    return pages


def _set_path(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node.setdefault(path[-1], value)  # the first occurrence in page order wins


def _line_record(m: re.Match[str], page: int, quote: str, with_sku: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"sku": m["sku"]} if with_sku else {}
    groups = m.groupdict()
    record.update(
        description=m["description"].strip(),
        quantity=int(groups["quantity"]) if groups.get("quantity") else None,
        unit_price=float(groups["unit_price"]) if groups.get("unit_price") else None,
        amount=float(groups["amount"]) if groups.get("amount") else None,
        page=page,
        quote=quote,
    )
    return record


def extract_commerce(schema: str, pages: Sequence[ShownPage]) -> dict[str, Any]:
    """``purchase_order`` or ``invoice`` data from the shown pages (see the module doc)."""
    labels = LABELS[schema]
    with_sku = schema == "purchase_order"
    data: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    pending: _Pending | None = None

    def flush() -> None:
        nonlocal pending
        if pending is not None:  # the rest is not in the prompt: report the visible part
            records.append(_line_record(pending.match, pending.page.page, pending.line, with_sku))
            pending = None

    for shown in pages:
        if pending is not None and (
            pending.page.doc != shown.doc or shown.page != pending.page.page + 1
        ):
            flush()
        for line in shown.lines:
            if m := LINE_RE.match(line):
                flush()
                records.append(_line_record(m, shown.page, line, with_sku))
            elif m := START_RE.match(line):
                flush()
                pending = _Pending(shown, m, line)
            elif m := CONT_RE.match(line):
                if pending is not None:
                    record = _line_record(pending.match, pending.page.page, pending.line, with_sku)
                    record.update(
                        description=f"{record['description']} {m['description'].strip()}",
                        quantity=int(m["quantity"]),
                        unit_price=float(m["unit_price"]),
                        amount=float(m["amount"]),
                    )
                    records.append(record)
                    pending = None
                # else: an orphan continuation (its start is not in the prompt): not reported
            elif (m := LABEL_RE.match(line)) and m["label"] in labels:
                path, amount = labels[m["label"]]
                value: Any = m["value"].strip()
                if amount:
                    try:
                        value = float(value)
                    except ValueError:
                        continue
                _set_path(data, path, {"value": value, "page": shown.page, "quote": line})
    flush()
    data[LINE_FIELD[schema]] = records
    return data


def extract_tables(pages: Sequence[ShownPage]) -> dict[str, Any]:
    """``tables`` data: a ``Table N: caption`` line starts a table, the next line holds its column
    names, and every later line with as many `` | ``-separated cells is a row (on the same page or
    the pages right after it, until the next caption). Rows whose caption is not in the prompt are
    not reported."""
    tables: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    width = 0
    last: ShownPage | None = None
    for shown in pages:
        if (
            current is not None
            and last is not None
            and (shown.doc != last.doc or shown.page not in (last.page, last.page + 1))
        ):
            current = None
        for line in shown.lines:
            if m := CAPTION_RE.match(line):
                current = {
                    "table": int(m["table"]),
                    "caption": m["caption"].strip(),
                    "columns": [],
                    "page": shown.page,
                }
                tables.append(current)
                width, last = 0, shown
                continue
            if current is None:
                continue
            cells = line.split(CELL_SEP)
            if width == 0:
                if len(cells) > 1:
                    current["columns"], width = cells, len(cells)
                continue
            if len(cells) == width:
                rows.append(
                    {"table": current["table"], "cells": cells, "page": shown.page, "quote": line}
                )
                last = shown
    return {"tables": tables, "rows": rows}


def summarize(pages: Sequence[ShownPage]) -> dict[str, Any]:
    """A minimal DocumentSummary: the first line as title, one key point per shown page (at most 12,
    spread over the pages), each citing its page."""
    with_text = [p for p in pages if p.lines]
    title = with_text[0].lines[0][:200] if with_text else None
    numbers = sorted({p.page for p in pages})
    span = f"pages {numbers[0]}-{numbers[-1]}" if numbers else "no pages"
    n_lines = sum(len(p.lines) for p in pages)
    summary = f"{title or 'The document'}: {len(numbers)} page(s) shown ({span}), {n_lines} lines."
    picks = with_text
    if len(with_text) > 12:
        picks = [with_text[round(i * (len(with_text) - 1) / 11)] for i in range(12)]
    seen = Counter(line for p in with_text for line in set(p.lines))
    points = [
        {"point": f"Page {p.page}: {_first_own_line(p, seen)}"[:300], "pages": [p.page]}
        for p in dict.fromkeys(picks)
    ]
    return {"title": title, "summary": summary[:3000], "key_points": points}


def _first_own_line(page: ShownPage, seen: Counter[str]) -> str:
    """The page's first line that no other shown page has (running headers say nothing)."""
    return next((line for line in page.lines if seen[line] == 1), page.lines[0])


def answer(pages: Sequence[ShownPage], instruction: str) -> dict[str, Any]:
    """A minimal Answer: the shown line that best matches the question's words (each word weighs
    1 / the number of shown lines holding it, so rare words decide; the first line in prompt order
    on a tie) as answer and quote; ``found`` false when no line shares a word."""
    m = _QUESTION_RE.search(instruction)
    words = {
        w
        for w in re.findall(r"\w+", (m[1] if m else "").casefold())
        if len(w) >= 3 and w not in _STOP_WORDS
    }
    lines = [
        (shown, line, words & set(re.findall(r"\w+", line.casefold())))
        for shown in pages
        for line in shown.lines
    ]
    holders = Counter(w for _, _, hits in lines for w in hits)
    several = len({p.doc for p in pages}) > 1
    best: tuple[float, ShownPage, str] | None = None
    for shown, line, hits in lines:
        score = sum(1.0 / holders[w] for w in hits)
        if score > 0 and (best is None or score > best[0]):
            best = (score, shown, line)
    if best is None:
        return {
            "answer": "The pages shown do not contain the answer.",
            "found": False,
            "pages": [],
            "quotes": [],
            "confidence": None,
        }
    _, shown, line = best
    quote = {"page": shown.page, "text": line[:300], "document": shown.doc if several else None}
    return {
        "answer": line[:1000],
        "found": True,
        "pages": [shown.page],
        "quotes": [quote],
        "confidence": None,
    }


def reduce_partials(schema: str, partials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The reduce call of summaries and answers: partial results merged without invention."""
    if not partials:
        return summarize([]) if schema == "summary" else answer([], "")
    if schema == "summary":
        points: dict[str, dict[str, Any]] = {}
        for part in partials:
            for point in part.get("key_points") or []:
                points.setdefault(point["point"], point)
        titles = [p.get("title") for p in partials if p.get("title")]
        return {
            "title": titles[0] if titles else None,
            "summary": " ".join(str(p.get("summary") or "") for p in partials).strip()[:3000],
            "key_points": list(points.values())[:12],
        }
    if schema == "answer":
        found = [p for p in partials if p.get("found")]
        if not found:
            return dict(partials[0])
        pages = sorted({n for p in found for n in p.get("pages") or []})
        quotes = [q for p in found for q in p.get("quotes") or []]
        return {
            "answer": found[0].get("answer") or "",
            "found": True,
            "pages": pages[:20],
            "quotes": quotes[:8],
            "confidence": None,
        }
    return dict(partials[0])
