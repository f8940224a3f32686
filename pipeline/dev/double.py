"""A deterministic test double for the model: it reads the text layer of the pages in its prompt.

:class:`TextLayerModel` implements :class:`~pipeline.model.base.ModelBackend`. A random model cannot
show whether records survive docvl's windows, re-asks and merges; this double answers like a
perfect, literal reader of the pages it is shown, and fails the way a real model behind a server
fails when its reply is too long. Use it with the documents of :mod:`pipeline.dev.synth`.

What it models of a real model (Qwen3-VL behind a transformers or vLLM backend):

* **Only the prompt counts.** It reads the text layers that follow the ``<page N>`` markers of its
  content (a layer cut at ``max_text_chars_per_page`` is read as cut) and nothing else: records come
  only from pages in the prompt, cited by their marker's number.
* **The schema asked for.** It answers in the schema of the request (found from
  ``request.json_schema``'s property names, else the ``'name' schema`` of the instruction):
  ``purchase_order``, ``invoice`` and ``tables`` extractions of the synth format (records in page
  order, ``page`` = the page a record is printed on, ``quote`` = the printed line), plus minimal
  ``DocumentSummary`` and ``Answer`` replies citing shown pages, and the reduce calls of those two
  (``<partial i: ...>`` content), so multi-task runs work.
* **The reply's form.** Compact JSON with every key of the schema (nulls for what the pages do
  not show, as the instruction asks), in schema field order. Constrained decoding: lists are cut at
  ``maxItems`` and strings at ``maxLength`` of ``request.json_schema`` where it has them (the
  bounded ``schemas.decoder_schema``), so records past a cap are silently lost, as they would be
  under a constrained decoder; an unbounded schema cuts nothing.
* **The output budget.** A reply longer than ``request.max_new_tokens`` is cut at that many tokens
  (the tokenizer's first N tokens when the counter has one; else the longest prefix whose estimate
  fits) and reported with ``finish_reason="length"``, as a server does: the JSON is then
  incomplete.
* **Rows split over a page break.** A row whose start is on page N and whose rest is on page N+1 is
  reported from page N: whole when N+1 is in the prompt too, else with only the part visible on
  page N (its numbers null). A continuation whose start is not in the prompt is not reported (the
  row starts on a page the model was not shown).
* **Token accounting and prefix caching** like :class:`~pipeline.model.scripted.ScriptedBackend`:
  ``input_tokens`` is ``counter.prompt(content, instruction)`` plus the re-ask turns,
  ``output_tokens`` the tokens of the returned text, and every request after the first on the same
  content reports the content's tokens as cached.

What it does not model: images (a page without a text layer, a scan, shows it nothing), reading
errors, hallucination, paraphrase, page-number mistakes, temperature (a re-ask with ``turns`` or at
a higher temperature gets the same reply: a reply cut by the budget is cut again), other layouts
than the synth format, other extraction schemas (they raise ValueError), latency.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from pipeline.dev.synth import (
    CAPTION_RE,
    CELL_SEP,
    CONT_RE,
    LABEL_RE,
    LABELS,
    LINE_FIELD,
    LINE_RE,
    START_RE,
)
from pipeline.model.base import FinishReason, Generation, GenerationRequest
from pipeline.plan.count import TokenCounter
from pipeline.plan.prompt import Part, TextPart, hf_messages
from schemas import BUILTIN, get_schema, schema_name
from schemas.errors import SchemaError

_DOCUMENT_RE = re.compile(r"^<document (\d+): (.*), (\d+) pages>\n?$")
_PAGE_RE = re.compile(r"^<page (\d+)>\n?$")
_PARTIAL_RE = re.compile(r"^<partial \d+: [^>]*>\n")
_SCHEMA_IN_INSTRUCTION = re.compile(r"into the '([^']+)' schema")
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
SUPPORTED = ("purchase_order", "invoice", "tables", "summary", "answer")


@dataclass(frozen=True)
class ShownPage:
    """One page as the double sees it: document number (from the header), page number (from the
    marker) and the non-empty lines of its text layer."""

    doc: int
    page: int
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class DoubleCall:
    """One request the double answered: the request, the page numbers in its prompt (sorted, the
    documents of a shared window together; empty for a reduce call) and the reply."""

    request: GenerationRequest
    pages: tuple[int, ...]
    generation: Generation


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


def request_schema(request: GenerationRequest) -> tuple[str, type[BaseModel]]:
    """The built-in schema (name, model) a request asks for: the one whose fields are the
    properties of ``request.json_schema``, else the smallest whose fields include them (a user's
    schema for the same document kind: the reply is then fitted to it), else the one the
    instruction names."""
    props = (request.json_schema or {}).get("properties")
    if isinstance(props, dict):
        for name, entry in BUILTIN.items():
            if set(entry.model.model_fields) == set(props):
                return name, entry.model
        wider = [
            (len(e.model.model_fields), n, e.model)
            for n, e in BUILTIN.items()
            if e.extraction and set(props) <= set(e.model.model_fields)
        ]
        if wider:
            _, name, model = min(wider, key=lambda w: w[0])
            return name, model
    if m := _SCHEMA_IN_INSTRUCTION.search(request.instruction):
        try:
            model = get_schema(m[1])
        except SchemaError:
            pass
        else:
            return schema_name(model), model
    raise ValueError("TextLayerModel: cannot tell which schema the request asks for")


# --- replies --------------------------------------------------------------------------------------


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


def fit_schema(value: Any, schema: Any) -> Any:
    """``value`` with lists cut at ``maxItems`` and strings at ``maxLength`` of the JSON
    ``schema``: what a constrained decoder lets through."""
    if not isinstance(schema, dict):
        return value
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        for option in options:
            if _json_type_matches(value, option):
                return fit_schema(value, option)
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: fit_schema(v, props.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        cap = schema.get("maxItems")
        items = value[: int(cap)] if isinstance(cap, int) else value
        return [fit_schema(v, schema.get("items")) for v in items]
    if isinstance(value, str):
        cap = schema.get("maxLength")
        return value[: int(cap)] if isinstance(cap, int) else value
    return value


def _json_type_matches(value: Any, schema: Any) -> bool:
    if not isinstance(schema, dict) or "type" not in schema:
        return True
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if value is None:
        kind = "null"
    elif isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        return "integer" in kinds or "number" in kinds
    elif isinstance(value, float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        kind = "array"
    else:
        kind = "object"
    return kind in kinds


# --- the backend ----------------------------------------------------------------------------------


class TextLayerModel:
    """A deterministic ModelBackend that reads the text layers in its prompt (see the module doc).

    ``counter`` counts prompt and reply tokens (default: the estimate). ``calls`` records every
    request answered, with the pages of its prompt and the reply, in order; it is appended to
    under a lock, so concurrent ``generate`` calls are safe.
    """

    name = "textlayer"

    def __init__(
        self, counter: TokenCounter | None = None, *, model_id: str = "docvl-textlayer-double"
    ) -> None:
        self.model_id = model_id
        self.counter = counter if counter is not None else TokenCounter()
        self.calls: list[DoubleCall] = []
        self.closed = False
        self._last_content: tuple[Part, ...] | None = None
        self._lock = threading.Lock()

    @property
    def requests(self) -> list[GenerationRequest]:
        with self._lock:
            return [c.request for c in self.calls]

    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        parts = tuple(content)
        pages = read_pages(parts)
        shown = tuple(sorted({p.page for p in pages}))
        content_tokens = self.counter.content(parts) if parts else 0
        replies = []
        for request in requests:
            text, finish, n_out = self._cut(self.reply(parts, pages, request), request)
            replies.append((request, text, finish, n_out, self._prompt_tokens(parts, request)))
        out: list[Generation] = []
        with self._lock:
            same = self._last_content == parts
            self._last_content = parts
            for i, (request, text, finish, n_out, n_in) in enumerate(replies):
                generation = Generation(
                    text=text,
                    finish_reason=finish,
                    input_tokens=n_in,
                    output_tokens=n_out,
                    cached_tokens=content_tokens if (same or i > 0) else 0,
                    timings={"decode_s": 0.0},
                )
                self.calls.append(DoubleCall(request, shown, generation))
                out.append(generation)
        return out

    def reply(
        self, content: Sequence[Part], pages: Sequence[ShownPage], request: GenerationRequest
    ) -> str:
        """The whole reply (before the token budget) as compact JSON in schema field order."""
        name, model = request_schema(request)
        partials = [
            json.loads(part.text.split("\n", 1)[1])
            for part in content
            if isinstance(part, TextPart) and _PARTIAL_RE.match(part.text)
        ]
        data: dict[str, Any]
        if partials:
            data = reduce_partials(name, partials)
        elif name == "summary":
            data = summarize(pages)
        elif name == "answer":
            data = answer(pages, request.instruction)
        elif name == "tables":
            data = extract_tables(pages)
        elif name in LINE_FIELD:
            data = extract_commerce(name, pages)
        else:
            raise ValueError(
                f"TextLayerModel reads only {', '.join(SUPPORTED)}; the request asks for {name!r}"
            )
        fitted = fit_schema(data, request.json_schema)
        value = model.model_validate(fitted).model_dump(mode="json")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def _cut(self, text: str, request: GenerationRequest) -> tuple[str, FinishReason, int]:
        """``text`` within ``request.max_new_tokens``: the reply, why it stopped, its tokens."""
        budget = max(0, request.max_new_tokens)
        n = self.counter.text(text)
        if n <= budget:
            return text, "stop", n
        tokenizer = self.counter.tokenizer
        if tokenizer is not None:
            ids = tokenizer.encode(text, add_special_tokens=False)[:budget]
            return str(tokenizer.decode(ids)), "length", len(ids)
        low, high = 0, len(text)  # the longest prefix whose estimate fits
        while low < high:
            mid = (low + high + 1) // 2
            if self.counter.text(text[:mid]) <= budget:
                low = mid
            else:
                high = mid - 1
        cut = text[:low]
        return cut, "length", self.counter.text(cut)

    def _prompt_tokens(self, parts: Sequence[Part], request: GenerationRequest) -> int:
        n = self.counter.prompt(parts, request.instruction)
        if not request.turns:
            return n
        tokenizer = self.counter.tokenizer
        if tokenizer is None:  # estimate: text plus ChatML framing per message
            return n + sum(
                self.counter.text(t.reply) + self.counter.text(t.feedback) + 10
                for t in request.turns
            )
        rendered = [
            tokenizer.apply_chat_template(
                hf_messages(parts, request.instruction, turns),
                tokenize=False,
                add_generation_prompt=True,
            )
            for turns in (request.turns, ())
        ]
        with_turns, without = (len(tokenizer.encode(r, add_special_tokens=False)) for r in rendered)
        return int(n + with_turns - without)

    def close(self) -> None:
        self.closed = True
