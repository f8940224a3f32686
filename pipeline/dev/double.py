"""A deterministic test double for the model: it reads the text layer of the pages in its prompt.

:class:`TextLayerModel` implements :class:`~docvl.pipeline.model.base.ModelBackend`. A random model
cannot show whether records survive docvl's windows, re-asks and merges; this double answers like a
perfect, literal reader of the pages it is shown, and fails the way a real model behind a server
fails when its reply is too long. Use it with the documents of :mod:`docvl.pipeline.dev.synth`.

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
  bounded ``docvl.schemas.decoder_schema``), so records past a cap are silently lost, as they would
  be under a constrained decoder; an unbounded schema cuts nothing. A user's schema for the same
  kind of document (its properties a subset of a built-in schema's) gets the built-in reply fitted
  to it: keys an object with ``additionalProperties: false`` does not list are left out.
* **The output budget.** A reply longer than ``request.max_new_tokens`` is cut at that many tokens
  (the tokenizer's first N tokens when the counter has one; else the longest prefix whose estimate
  fits) and reported with ``finish_reason="length"``, as a server does: the JSON is then
  incomplete.
* **Rows split over a page break.** A row whose start is on page N and whose rest is on page N+1 is
  reported from page N: whole when N+1 is in the prompt too, else with only the part visible on
  page N (its numbers null). A continuation whose start is not in the prompt is not reported (the
  row starts on a page the model was not shown).
* **A re-ask about some pages.** When the instruction asks only for the records that begin on some
  pages (:data:`~docvl.pipeline.tasks.specs.ONLY_PAGES`, the other pages shown for context), its
  record lists hold only those records (a row that continues on a context page whole), as an
  instruction-following model replies.
* **Token accounting and prefix caching** like
  :class:`~docvl.pipeline.model.scripted.ScriptedBackend`: ``input_tokens`` is
  ``counter.prompt(content, instruction)`` plus the re-ask turns, ``output_tokens`` the tokens of
  the returned text, and every request after the first on the same content reports the content's
  tokens as cached.
* **Token log-probabilities** (only with ``token_probability``): a server that honours
  ``logprobs``. Every reply is cut into tokens of :data:`LOGPROB_PIECE` characters, each with
  log-probability ``log(token_probability)``: a model equally sure of every token it writes.

What it does not model: images (a page without a text layer, a scan, shows it nothing), reading
errors, hallucination, paraphrase, page-number mistakes, temperature (a re-ask with ``turns`` or at
a higher temperature gets the same reply: a reply cut by the budget is cut again), other layouts
than the synth format, other extraction schemas (they raise ValueError), latency.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docvl.pipeline.dev.printed import LINE_FIELD
from docvl.pipeline.dev.reader import (
    ShownPage,
    answer,
    extract_commerce,
    extract_tables,
    read_pages,
    reduce_partials,
    summarize,
)
from docvl.pipeline.dev.request import asked_pages, fit_schema, request_schema
from docvl.pipeline.model.base import FinishReason, Generation, GenerationRequest
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import Part, TextPart, hf_messages

_PARTIAL_RE = re.compile(r"^<partial \d+: [^>]*>\n")
#: Characters per token in the double's log-probabilities.
LOGPROB_PIECE = 4
SUPPORTED = ("purchase_order", "invoice", "tables", "summary", "answer")


@dataclass(frozen=True)
class DoubleCall:
    """One request the double answered: the request, the page numbers in its prompt (sorted, the
    documents of a shared window together; empty for a reduce call) and the reply."""

    request: GenerationRequest
    pages: tuple[int, ...]
    generation: Generation


# --- the backend ----------------------------------------------------------------------------------


class TextLayerModel:
    """A deterministic ModelBackend that reads the text layers in its prompt (see the module doc).

    ``counter`` counts prompt and reply tokens (default: the estimate). ``calls`` records every
    request answered, with the pages of its prompt and the reply, in order; it is appended to
    under a lock, so concurrent ``generate`` calls are safe.
    """

    name = "textlayer"

    def __init__(
        self,
        counter: TokenCounter | None = None,
        *,
        model_id: str = "docvl-textlayer-double",
        token_probability: float | None = None,
    ) -> None:
        self.model_id = model_id
        self.token_probability = token_probability
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
                    token_logprobs=self._logprobs(text),
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
        wanted = asked_pages(request)
        if wanted is not None and name in ("tables", *LINE_FIELD):
            for key, items in data.items():
                if isinstance(items, list):
                    data[key] = [r for r in items if r.get("page") in wanted]
        value = model.model_validate(data).model_dump(mode="json")
        fitted = fit_schema(value, request.json_schema)
        return json.dumps(fitted, separators=(",", ":"), ensure_ascii=False)

    def _logprobs(self, text: str) -> tuple[tuple[str, float], ...]:
        if self.token_probability is None:
            return ()
        logprob = math.log(self.token_probability)
        return tuple(
            (text[i : i + LOGPROB_PIECE], logprob) for i in range(0, len(text), LOGPROB_PIECE)
        )

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
