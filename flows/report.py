"""Prefect artifacts of a run: a table of documents and a markdown report per document (presentation
only)."""

from __future__ import annotations

import logging
import re
from typing import Any

from pipeline.result import ResultEnvelope

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
        f"# {env.source.path}",
        "",
        f"**status** {env.status} · **pages** {env.source.pages} · **tokens** "
        f"{env.usage.input_tokens} in / {env.usage.output_tokens} out · **cost** "
        f"${env.usage.cost_usd:.6f}",
        "",
    ]
    for err in env.errors:
        lines.append(f"- error `{err.code}`{_pages([err.page] if err.page else [])}: {err.message}")
    if env.summary is not None:
        data = env.summary.data
        lines += ["## Summary", ""]
        if data.title:
            lines += [f"### {data.title}", ""]
        lines += [data.summary, ""]
        lines += [f"- {kp.point}{_pages(list(kp.pages))}" for kp in data.key_points]
        lines.append("")
    if env.answer is not None:
        lines += [
            "## Answer",
            "",
            f"**Q:** {env.answer.question}",
            "",
            f"{env.answer.data.answer}{_pages(list(env.answer.data.pages))}",
            "",
        ]
    if env.extraction is not None:
        ext = env.extraction
        pages = {item.path: item.pages for item in ext.grounding.items}
        lines += [
            f"## Extraction: {ext.schema_name} {ext.schema_version}",
            "",
            "| field | value | pages |",
            "|---|---|---|",
        ]
        for path, value in _flatten(ext.data):
            cell = str(value).replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(f"| `{path}` | {cell} | {', '.join(map(str, _pages_for(path, pages)))} |")
        lines.append("")
    return "\n".join(lines)


def _pages_for(path: str, pages: dict[str, list[int]]) -> list[int]:
    while path:
        if path in pages:
            return pages[path]
        path = (
            re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
            if re.search(r"(\.[^.\[]+|\[\d+\])$", path)
            else ""
        )
    return []


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        out: list[tuple[str, Any]] = []
        for key, value in data.items():
            out += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(data, list) and data and isinstance(data[0], dict | list):
        out = []
        for i, value in enumerate(data):
            out += _flatten(value, f"{prefix}[{i}]")
        return out
    return [(prefix, data)]


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
