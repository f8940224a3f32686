"""Records cut by a page break: found, re-read with the page that follows, and merged once.

A record (a table row) that starts at the bottom of page N and ends at the top of page N+1 comes
back whole only from a prompt that holds both pages. A prompt that ends at page N (a one-page
segment, the first half of a bisected window) gives a *fragment*: the part printed on page N, with
null where the rest of the row was (a prompt that starts at page N+1 does not see where the row
starts, and a reader reports nothing for it, or a fragment of its own).

* :func:`cut_pages`: pages whose last record of a record list lacks a value most records of that
  list have (:func:`missing_fields`), unless another record of the list already completes it;
* :func:`completes`: whether one record is the whole of a fragment (same page, and every value of
  the fragment equal to the whole's, or the start of it for text);
* :func:`join`: the fragments replaced, where they stand, by the records that complete them, from
  a reply about page N shown with page N+1 (:func:`~docvl.pipeline.tasks.completeness.complete` asks
  it); the reply's other records of page N merge in as usual (de-duplicated).

So each such row comes back exactly once, merged, and keeps its position in page order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from docvl.pipeline.tasks.charmap import normalize
from docvl.pipeline.tasks.grounding import cited_pages
from docvl.pipeline.tasks.reduce import merge_partials, norm_key, record_list_fields

_PROVENANCE = ("page", "pages", "quote", "document")


def _filled(value: Any) -> bool:
    return value not in (None, "", [])


def _fields(record: Mapping[str, Any]) -> list[str]:
    return [k for k in record if k not in _PROVENANCE]


def missing_fields(record: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Fields ``record`` leaves empty that more than half of ``siblings`` (the other records of its
    list) fill."""
    if not siblings:
        return []
    out = []
    for name in _fields(record):
        if _filled(record.get(name)):
            continue
        filled = sum(1 for s in siblings if _filled(s.get(name)))
        if filled * 2 > len(siblings):
            out.append(name)
    return out


def completes(whole: Mapping[str, Any], fragment: Mapping[str, Any]) -> bool:
    """Whether ``whole`` is ``fragment`` with what the page break cut off: it cites the same first
    page, fills more, and each value the fragment has is equal in ``whole`` (text: ``whole``'s
    starts with it, normalised)."""
    if whole is fragment or cited_pages(whole)[:1] != cited_pages(fragment)[:1]:
        return False
    more = False
    for name in {*_fields(whole), *_fields(fragment)}:
        part, full = fragment.get(name), whole.get(name)
        if not _filled(part):
            more = more or _filled(full)
            continue
        if isinstance(part, str) and isinstance(full, str):
            short, long = normalize(part), normalize(full)
            if not long.startswith(short):
                return False
            more = more or len(long) > len(short)
        elif norm_key(part) != norm_key(full):
            return False
    return more


def cut_pages(model: type[BaseModel], data: Mapping[str, Any]) -> list[int]:
    """Pages whose last record in a record list looks cut by the page break after it: it lacks
    values its list mostly has (:func:`missing_fields`) and no other record of the list completes
    it. Only a page's last record can run onto the next page; an incomplete record elsewhere is
    left alone (not every incomplete row is a cut one)."""
    out: set[int] = set()
    for name in record_list_fields(model):
        items = [i for i in data.get(name) or [] if isinstance(i, Mapping)]
        last: dict[int, Mapping[str, Any]] = {}
        for item in items:
            pages = cited_pages(item)
            if pages:
                last[pages[0]] = item
        for page, item in last.items():
            siblings = [i for i in items if i is not item]
            if missing_fields(item, siblings) and not any(completes(s, item) for s in siblings):
                out.add(page)
    return sorted(out)


def join(
    model: type[BaseModel], data: Mapping[str, Any], reply: Mapping[str, Any], page: int
) -> tuple[dict[str, Any], int]:
    """``data`` with its fragments of ``page`` replaced, in place in their lists, by the records of
    ``reply`` (a reply about ``page`` with the page after it) that complete them; the reply's other
    records of ``page`` merged in (de-duplicated). Returns the data and how many were replaced."""
    out = dict(data)
    joined = 0
    used: set[int] = set()
    for name in record_list_fields(model):
        items = out.get(name)
        wanted = [
            r
            for r in reply.get(name) or []
            if isinstance(r, Mapping) and cited_pages(r)[:1] == [page]
        ]
        if not isinstance(items, list) or not wanted:
            continue
        fixed = []
        for item in items:
            whole = next(
                (
                    r
                    for r in wanted
                    if id(r) not in used and isinstance(item, Mapping) and completes(r, item)
                ),
                None,
            )
            if whole is not None:
                used.add(id(whole))
                joined += 1
            fixed.append(dict(whole) if whole is not None else item)
        out[name] = fixed
    rest = {
        name: [r for r in reply.get(name) or [] if id(r) not in used]
        for name in record_list_fields(model)
    }
    merged, _conflicts = merge_partials(model, [out, rest])
    return merged, joined
