"""Per-record confidence in the merged extraction, from the replies that produced its records.

Every accepted reply with token log-probabilities (a window's, or a completeness re-ask's) gives
its records a confidence (:func:`~docvl.pipeline.tasks.confidence.record_confidence`). A record of
the merged data gets the confidence of the first reply, in page order and window replies before
re-asks (as in the merge), that holds the same record (:func:`identities`); a record that reply does
contribute (a page another window or no re-ask owns) is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from docvl.pipeline.engine.windows import WindowResult
from docvl.pipeline.result import Grounding
from docvl.pipeline.tasks.confidence import ScoredReply, combined, record_confidence, value_at
from docvl.pipeline.tasks.grounding import cited_pages, iter_records
from docvl.pipeline.tasks.reduce import norm_key
from docvl.pipeline.tasks.specs import TaskSpec

#: A list index in a grounding path (``lines[3]``).
_INDEX = re.compile(r"\[\d+\]")


def identities(path: str, record: Mapping[str, Any]) -> list[Any]:
    """How a record is recognised across the merge, strictest first: its field path with list
    indices dropped (``lines[].amount``), its :func:`norm_key` (its values, provenance left out)
    and its cited pages; then the same without the pages (the merge widens a duplicate's pages)."""
    shape = _INDEX.sub("[]", path)
    key = norm_key(record)
    return [(shape, key, tuple(cited_pages(record))), (shape, key)]


def window_replies(
    spec: TaskSpec,
    results: Sequence[WindowResult],
    owned: Mapping[int, tuple[int, int]] | None = None,
) -> list[ScoredReply]:
    """The accepted replies of ``spec`` in the windows ``results`` (in their order), each with the
    pages it contributes (``owned``, by window index; all pages when absent)."""
    out = []
    for wr in results:
        span = owned.get(wr.window.index) if owned is not None else None
        pages = range(span[0], span[1] + 1) if span is not None else None
        for tr in wr.tasks:
            if tr.task == spec.name and tr.data is not None:
                out.append(ScoredReply(tr.data, tr.confidence, pages))
    return out


def record_confidences(replies: Iterable[ScoredReply], lists: Sequence[str]) -> dict[Any, float]:
    """Per record identity (:func:`identities`), the record's confidence in the first reply that
    holds it. Records of the record lists ``lists`` citing a page the reply does not contribute
    are left out."""
    out: dict[Any, float] = {}
    for reply in replies:
        if not reply.confidence:
            continue
        for path, record in iter_records(reply.data):
            page = record.get("page")
            if (
                reply.pages is not None
                and _INDEX.split(path)[0] in lists
                and isinstance(page, int)
                and page not in reply.pages
            ):
                continue
            value = record_confidence(reply.confidence, path)
            if value is not None:
                for key in identities(path, record):
                    out.setdefault(key, value)
    return out


def add_confidence(grounding: Grounding, data: Any, confidences: Mapping[Any, float]) -> None:
    """Each grounding item whose record a window reply produced: ``model_confidence`` and
    ``confidence`` (weighed by its grounding status, :func:`combined`)."""
    for item in grounding.items:
        record = value_at(data, item.path)
        if not isinstance(record, Mapping):
            continue
        known = [confidences[k] for k in identities(item.path, record) if k in confidences]
        if known:
            item.model_confidence = known[0]
            item.confidence = combined(known[0], item.status)
