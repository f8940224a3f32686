"""``docvl report``: one self-contained HTML file to review a batch's results next to their pages.

The file holds everything: the records as JSON, the cited page images as JPEG data URIs, the style
and the script. Nothing is fetched from outside (a Content-Security-Policy with a per-file script
nonce forbids it), and every value from a document reaches the page through ``textContent`` only,
never as markup, so a document cannot inject script.

Page images are rendered again from the source files (the records do not hold pixels): by default
the pages something cites (fields, key points, answers) plus the first page, at ``REPORT_DPI``. A
source that is missing or changed since the run (its sha256 differs) gets no images, and the report
says why.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from docvl.flows import report
from docvl.flows.report import item_page
from docvl.pipeline.errors import DocvlError, UsageError
from docvl.pipeline.ingest.load import file_sha256, load_document
from docvl.pipeline.ingest.raster import content_size
from docvl.pipeline.ingest.render import encode_image, iter_rendered
from docvl.pipeline.result import GroundingItem, ResultEnvelope
from docvl.pipeline.settings import Settings

#: Report page images: smaller than the model's (a reviewer reads them on a screen).
REPORT_DPI = 100
JPEG_QUALITY = 72
#: Pages rendered per document at most (a 600-page document cites many pages).
MAX_PAGES_PER_DOCUMENT = 60
Images = Literal["cited", "all", "none"]


@dataclass(frozen=True)
class PageImage:
    """A JPEG data URI and where the page content sits in it, as fractions (letterboxed pages)."""

    uri: str
    box: tuple[float, float, float, float]  #: left, top, width, height in [0, 1]
    size_pt: tuple[float, float]  #: the page's (width, height) in PDF points as displayed

    def rect(self, bbox: tuple[float, float, float, float]) -> list[float]:
        """``bbox`` (points, top-left origin) as [left, top, width, height] fractions of the
        image."""
        left, top, width, height = self.box
        w_pt, h_pt = self.size_pt
        x0, y0, x1, y1 = bbox
        return [
            round(left + width * x0 / w_pt, 5),
            round(top + height * y0 / h_pt, 5),
            round(width * (x1 - x0) / w_pt, 5),
            round(height * (y1 - y0) / h_pt, 5),
        ]


def load_envelopes(source: Path) -> list[ResultEnvelope]:
    """Records from a JSONL file (``--out``) or a directory of ``*.json`` (``--output-dir``)."""
    if source.is_dir():
        files = sorted(p for p in source.glob("*.json") if p.is_file())
        texts = [p.read_text(encoding="utf-8") for p in files]
    elif source.is_file():
        texts = [ln for ln in source.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        raise UsageError(f"{source}: no such results file or directory")
    envelopes: list[ResultEnvelope] = []
    for n, text in enumerate(texts, 1):
        try:
            envelopes.append(ResultEnvelope.model_validate_json(text))
        except ValueError as exc:
            raise UsageError(f"{source}: record {n} is not a docvl result ({exc})") from None
    if not envelopes:
        raise UsageError(f"{source}: holds no results")
    return envelopes


def cited_pages(env: ResultEnvelope) -> list[int]:
    """Page 1 and every page a field, key point, quote or answer cites, in order."""
    pages: set[int] = {1} if env.source.pages else set()
    items: list[GroundingItem] = []
    if env.extraction is not None:
        items += env.extraction.grounding.items
    if env.answer is not None:
        items += env.answer.grounding.items
        pages.update(env.answer.data.pages)
    if env.summary is not None:
        for kp in env.summary.data.key_points:
            pages.update(kp.pages)
    for item in items:
        pages.update(item.pages)
        if item.page is not None:
            pages.add(item.page)
    return sorted(p for p in pages if 1 <= p <= env.source.pages)


def page_images(
    env: ResultEnvelope, settings: Settings, images: Images = "cited"
) -> tuple[dict[int, PageImage], str | None]:
    """The document's page images, or none and the reason why."""
    if images == "none" or not env.source.pages:
        return {}, None
    path = Path(env.source.path)
    if not path.is_file():
        return {}, f"page images unavailable: {env.source.path} is not found"
    if env.source.sha256 and file_sha256(path) != env.source.sha256:
        return {}, "page images unavailable: the file changed since the run (sha256 differs)"
    wanted = cited_pages(env) if images == "cited" else list(range(1, env.source.pages + 1))
    note = None
    if len(wanted) > MAX_PAGES_PER_DOCUMENT:
        note = f"page images: the first {MAX_PAGES_PER_DOCUMENT} of {len(wanted)} pages"
        wanted = wanted[:MAX_PAGES_PER_DOCUMENT]
    view = settings.model_copy(update={"dpi": REPORT_DPI})
    out: dict[int, PageImage] = {}
    try:
        with load_document(path, view) as doc:
            for rendered in iter_rendered(doc, view, [p for p in wanted if p <= doc.page_count]):
                info = doc.pages[rendered.page - 1]
                w, h = rendered.image.size
                cw, ch = content_size(info.width_pt, info.height_pt, (h, w))
                box = ((w - cw) / 2 / w, (h - ch) / 2 / h, cw / w, ch / h)
                data = encode_image(rendered.image, "JPEG", JPEG_QUALITY)
                uri = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
                size = (max(info.width_pt, 1e-6), max(info.height_pt, 1e-6))
                out[rendered.page] = PageImage(uri, box, size)
    except DocvlError as exc:
        return out, f"page images unavailable: {exc.message}"
    return out, note


def _item_json(item: GroundingItem | None, images: dict[int, PageImage]) -> dict[str, Any]:
    if item is None:
        return {"status": None, "page": None, "pages": [], "rect": None, "confidence": None}
    page = item_page(item)
    image = images.get(page) if page is not None else None
    return {
        "status": item.status,
        "page": page,
        "pages": item.pages,
        "bbox": list(item.bbox) if item.bbox else None,
        "rect": image.rect(item.bbox) if image is not None and item.bbox else None,
        "match": item.match,
        "confidence": item.confidence,
        "detail": item.detail,
    }


def field_rows(
    data: dict[str, Any], items: Iterable[GroundingItem], images: dict[int, PageImage]
) -> list[dict[str, Any]]:
    """One row per leaf value, with the grounding of the record that holds it."""
    rows = []
    for path, value, item in report.field_rows(data, items):
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append({"path": path, "value": text, **_item_json(item, images)})
    return rows


def document_view(
    env: ResultEnvelope, images: dict[int, PageImage], note: str | None
) -> dict[str, Any]:
    """What the page script needs for one document (plain JSON; the script escapes nothing)."""
    grounding = env.extraction.grounding if env.extraction is not None else None
    view: dict[str, Any] = {
        "name": Path(env.source.path).name,
        "path": env.source.path,
        "status": env.status,
        "pages": env.source.pages,
        "usage": env.usage.model_dump(),
        "timings": env.timings.model_dump(),
        "errors": [e.model_dump() for e in env.errors],
        "warnings": env.warnings + ([note] if note else []),
        "grounding": grounding.model_dump(exclude={"items"}) if grounding else None,
        "images": {str(p): im.uri for p, im in images.items()},
    }
    if env.summary is not None:
        data = env.summary.data
        view["summary"] = {
            "title": data.title,
            "text": data.summary,
            "points": [{"text": kp.point, "pages": list(kp.pages)} for kp in data.key_points],
        }
    if env.answer is not None:
        view["answer"] = {
            "question": env.answer.question,
            "text": env.answer.data.answer,
            "found": env.answer.data.found,
            "pages": list(env.answer.data.pages),
            "quotes": [
                _item_json(it, images) | {"path": it.path} for it in env.answer.grounding.items
            ],
        }
    if env.extraction is not None:
        ext = env.extraction
        view["extraction"] = {
            "schema": f"{ext.schema_name} {ext.schema_version}",
            "fields": field_rows(ext.data, ext.grounding.items, images),
            "conflicts": [c.model_dump(mode="json") for c in ext.conflicts],
        }
    return view


def _json_for_script(data: object) -> str:
    """JSON that cannot close its ``<script>`` element nor start markup inside it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_html(views: list[dict[str, Any]], title: str) -> str:
    """The report page: the template with the data and a fresh script nonce filled in."""
    template = resources.files("docvl").joinpath("review.html").read_text(encoding="utf-8")
    fill = {
        "NONCE": secrets.token_urlsafe(16),
        "TITLE": html.escape(title),
        "DATA": _json_for_script(views),
    }
    return re.sub(r"\{\{(NONCE|TITLE|DATA)\}\}", lambda m: fill[m.group(1)], template)


def build_report(
    envelopes: list[ResultEnvelope], settings: Settings, images: Images = "cited"
) -> list[dict[str, Any]]:
    views = []
    for env in envelopes:
        found, note = page_images(env, settings, images)
        views.append(document_view(env, found, note))
    return views


def write_report(
    source: Path, out: Path, settings: Settings, images: Images = "cited"
) -> tuple[Path, int]:
    """Read the results at ``source``, write the report to ``out``; returns (out, documents)."""
    envelopes = load_envelopes(source)
    views = build_report(envelopes, settings, images)
    out.write_text(render_html(views, f"docvl report: {source.name}"), encoding="utf-8")
    return out, len(views)
