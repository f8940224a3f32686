"""Prefect artifacts of a run: a table of documents and a markdown report per document (presentation
only)."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from docvl.pipeline.result import GroundingItem, ResultEnvelope

log = logging.getLogger(__name__)


def table_rows(envelopes: list[ResultEnvelope], cached: set[int]) -> list[dict[str, Any]]:
    return [
        {
            "document": env.source.path,
            "status": env.status,
            "cached": i in cached,
            "pages": env.source.pages,
            "windows": len(env.plan.windows),
            "input_tokens": env.usage.input_tokens,
            "output_tokens": env.usage.output_tokens,
            "cost_usd": round(env.usage.cost_usd, 6),
            "errors": ", ".join(e.code for e in env.errors),
        }
        for i, env in enumerate(envelopes)
    ]


def _pages(pages: list[int]) -> str:
    return f" (p. {', '.join(map(str, pages))})" if pages else ""


def document_markdown(env: ResultEnvelope) -> str:
    lines = [
        f"# {_text(env.source.path)}",
        "",
        f"**status** {env.status} · **pages** {env.source.pages} · **tokens** "
        f"{env.usage.input_tokens} in / {env.usage.output_tokens} out · **cost** "
        f"${env.usage.cost_usd:.6f}",
        "",
    ]
    for err in env.errors:
        lines.append(
            f"- error `{err.code}`{_pages([err.page] if err.page else [])}: {_text(err.message)}"
        )
    if env.summary is not None:
        data = env.summary.data
        lines += ["## Summary", ""]
        if data.title:
            lines += [f"### {_text(data.title)}", ""]
        lines += [_text(data.summary), ""]
        lines += [f"- {_text(kp.point)}{_pages(list(kp.pages))}" for kp in data.key_points]
        lines.append("")
    if env.answer is not None:
        lines += [
            "## Answer",
            "",
            f"**Q:** {_text(env.answer.question)}",
            "",
            f"{_text(env.answer.data.answer)}{_pages(list(env.answer.data.pages))}",
            "",
        ]
    if env.extraction is not None:
        ext = env.extraction
        g = ext.grounding
        lines += [
            f"## Extraction: {ext.schema_name} {ext.schema_version}",
            "",
            f"{g.grounded} grounded, {g.page_only} on the cited page only, {g.ungrounded} "
            "ungrounded",
            "",
            "| field | value | page | grounding | confidence |",
            "|---|---|---|---|---|",
        ]
        for path, value, item in field_rows(ext.data, g.items):
            page = item_page(item)
            conf = f"{item.confidence:.2f}" if item and item.confidence is not None else "–"
            lines.append(
                f"| `{path}` | {_cell(value)} | {page or '–'} | "
                f"{item.status if item else '–'} | {conf} |"
            )
        lines.append("")
    return "\n".join(lines)


def _text(text: str) -> str:
    """Document text shown as text: HTML in it is escaped (a markdown renderer may pass it)."""
    return html.escape(text, quote=False)


def _cell(value: Any) -> str:
    """A markdown table cell that shows the value as text (no markup, no line breaks)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
    return text[:200]


#: Keys that say where a value comes from (shown as the page and grounding columns).
_CITATION_KEYS = frozenset({"page", "pages", "quote"})
_PATH_TAIL = re.compile(r"(\.[^.\[]+|\[\d+\])$")


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and "value" in value and set(value) - {"value"} <= _CITATION_KEYS:
        yield path, value["value"]  # a sourced value: {"value", "page", "quote"}
    elif isinstance(value, dict) and value:
        for key, sub in value.items():
            if key not in _CITATION_KEYS or not path:
                yield from _leaves(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        for i, sub in enumerate(value):
            yield from _leaves(sub, f"{path}[{i}]")
    else:
        yield path, value


def _owner(path: str, items: dict[str, GroundingItem]) -> GroundingItem | None:
    """The grounding item of ``path`` or of its nearest ancestor (records are grounded whole)."""
    while path:
        if path in items:
            return items[path]
        tail = _PATH_TAIL.search(path)
        if tail is None:
            return None
        path = path[: tail.start()]
    return None


def field_rows(
    data: dict[str, Any], items: Iterable[GroundingItem]
) -> list[tuple[str, Any, GroundingItem | None]]:
    """One row per leaf value of an extraction: (path, value, the grounding of its record)."""
    by_path = {item.path: item for item in items}
    return [(path, value, _owner(path, by_path)) for path, value in _leaves(data)]


def item_page(item: GroundingItem | None) -> int | None:
    """The page to show for a grounding item: where its evidence was found, else its first cited
    page."""
    if item is None:
        return None
    return item.page if item.page is not None else (item.pages[0] if item.pages else None)


def artifact_key(env: ResultEnvelope) -> str:
    stem = (
        re.sub(r"[^a-z0-9]+", "-", env.source.path.rsplit("/", 1)[-1].lower()).strip("-")[:40]
        or "doc"
    )
    return f"docvl-{stem}-{(env.source.sha256 or '0' * 12)[:12]}"


def publish(envelopes: list[ResultEnvelope], cached: set[int], *, title: str) -> None:
    """Create the run's artifacts; never fails the run (artifacts are a view, not a result)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    try:
        create_table_artifact(
            table=table_rows(envelopes, cached), key="docvl-batch", description=title
        )
        for i, env in enumerate(envelopes):
            if i not in cached:
                create_markdown_artifact(
                    markdown=document_markdown(env),
                    key=artifact_key(env),
                    description=f"docvl result: {env.source.path}",
                )
    except Exception as exc:  # pragma: no cover - server hiccup
        log.warning("could not publish artifacts: %s", exc)
