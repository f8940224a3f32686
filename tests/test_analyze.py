"""analyze end to end on generated PDFs with the scripted backend (and an exact tiny tokenizer)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pymupdf
import pytest

from docvl.pipeline.engine import Engine, WindowResult
from docvl.pipeline.errors import EmptyFile, UsageError
from docvl.pipeline.model.base import GenerationRequest, ModelBackend
from docvl.pipeline.model.scripted import ScriptedBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.prompt import ImagePart, Part, TextPart
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings

QUESTION = "What is the total?"


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    from docvl.pipeline.dev.tiny import build_tokenizer

    return TokenCounter(build_tokenizer())


def analyze_document(
    path: Path, settings: Settings, backend: ModelBackend, counter: TokenCounter
) -> ResultEnvelope:
    [envelope] = Engine(settings, backend, counter).analyze([path])
    return envelope


def make_pdf(path: Path, pages: int, label: str = "Item") -> Path:
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page(width=300, height=400)
        page.insert_text((36, 60), f"{label} number {n} costs {n * 10}.00 EUR in total")
    doc.save(path)
    doc.close()
    return path


def pages_in(content: Sequence[Part]) -> list[tuple[int, int]]:
    return [(p.doc, p.page) for p in content if isinstance(p, ImagePart)]


def reply(content: Sequence[Part], request: GenerationRequest) -> str:
    """Valid replies citing every page shown (a 'perfect' model), by task."""
    shown = pages_in(content)
    pages = sorted({p for _, p in shown})
    if "partial" in request.instruction.split("\n")[0]:  # model-based reduce
        found = [
            m
            for t in content
            if isinstance(t, TextPart)
            for m in re.findall(r'"pages":\[([\d,]+)\]', t.text)
        ]
        cited = sorted({int(n) for m in found for n in m.split(",")})
        if (
            "Answer schema" in request.instruction
            or "answers to the question" in request.instruction
        ):
            return json.dumps({"answer": "merged answer", "pages": cited[:20], "quotes": []})
        return json.dumps(
            {
                "title": "Merged",
                "summary": "merged",
                "key_points": [{"point": "all", "pages": cited[:20]}],
            }
        )
    if "DocumentSummary schema" in request.instruction:
        return json.dumps(
            {
                "title": "Doc",
                "summary": f"pages {pages}",
                "key_points": [{"point": f"page {p}", "pages": [p]} for p in pages[:12]],
            }
        )
    if "Answer schema" in request.instruction:
        doc, page = shown[0]
        return json.dumps(
            {
                "answer": "10.00 EUR",
                "pages": [page],
                "quotes": [
                    {"page": page, "text": f"costs {page * 10}.00 EUR", "document": doc + 1}
                ],
            }
        )
    items = [
        {
            "key": f"Item number {p}",
            "value": f"{p * 10}.00 EUR",
            "page": p,
            "quote": f"Item number {p} costs {p * 10}.00 EUR",
        }
        for p in pages
    ]
    return json.dumps({"form_title": None, "fields": items})


SETTINGS = dict(
    tasks=("summary", "ask", "extract"),
    question=QUESTION,
    schema_name="form",
    dpi=72,
    min_pixels=64 * 1024,
    max_pixels=256 * 1024,
)


def roundtrip(envelope: ResultEnvelope) -> dict[str, Any]:
    data = json.loads(envelope.model_dump_json())
    assert ResultEnvelope.model_validate(data) == envelope
    return data


def test_single_window_usage_equals_plan(tmp_path: Path, counter: TokenCounter) -> None:
    settings = Settings(**SETTINGS)
    backend = ScriptedBackend(reply, tokenizer=counter.tokenizer)
    envelope = analyze_document(make_pdf(tmp_path / "a.pdf", 3), settings, backend, counter)
    assert envelope.status == "ok", envelope.errors
    assert len(envelope.plan.windows) == 1 and envelope.plan.exact_tokens
    planned = sum(w.input_tokens for w in envelope.plan.windows)
    assert envelope.usage.input_tokens == envelope.plan.input_tokens == planned
    assert envelope.usage.requests == 3 and len(backend.calls) == 3
    assert envelope.usage.cost_usd > 0 and envelope.usage.cached_tokens > 0
    assert (
        envelope.source.pages == 3
        and envelope.source.kind == "pdf"
        and len(envelope.source.sha256 or "") == 64
    )
    assert envelope.summary is not None and envelope.summary.completeness.uncited_pages == []
    assert envelope.answer is not None and envelope.answer.grounding.grounded == 1
    assert envelope.extraction is not None and envelope.extraction.schema_name == "form"
    assert (
        envelope.extraction.grounding.grounded == 3
        and envelope.extraction.grounding.ungrounded == 0
    )
    # Every image went to the backend at the planned size.
    images = [p for p in backend.calls[0].content if isinstance(p, ImagePart)]
    assert all(p.image is not None and p.image.size == (p.width, p.height) for p in images)
    assert envelope.timings.total >= envelope.timings.render > 0
    roundtrip(envelope)


def test_long_document_map_reduce_check(tmp_path: Path, counter: TokenCounter) -> None:
    settings = Settings(**{**SETTINGS, "context_window": 2000, "max_output_tokens": 600})
    calls: list[str] = []

    def lossy(content: Sequence[Part], request: GenerationRequest) -> str:
        calls.append(request.instruction.split("\n")[0][:40])
        text = reply(content, request)
        if "'form' schema" in request.instruction and len(pages_in(content)) > 1:
            data = json.loads(text)
            data["fields"] = data["fields"][:-1]  # the map misses each window's last page
            return json.dumps(data)
        return text

    backend = ScriptedBackend(lossy, tokenizer=counter.tokenizer)
    path = make_pdf(tmp_path / "long.pdf", 8)
    envelope = analyze_document(path, settings, backend, counter)
    windows = envelope.plan.windows
    assert len(windows) > 1 and envelope.status == "ok", envelope.errors
    extraction = envelope.extraction
    assert extraction is not None
    keys = [f["key"] for f in extraction.data["fields"]]
    assert sorted(keys, key=lambda k: int(k.split()[-1])) == [
        f"Item number {p}" for p in range(1, 9)
    ]
    # The extraction (a record list) runs on output-aware segments that share a page with their
    # neighbour, the summary and the question on context-sized windows.
    context = [w for w in windows if w.tasks == ["summary", "ask"]]
    segments = [w for w in windows if w.tasks == ["extract"]]
    assert len(context) > 1 and len(segments) > 1 and len(context) + len(segments) == len(windows)
    assert all(a.last_page == b.first_page for a, b in itertools.pairwise(segments))
    # A segment's last page belongs to the next segment, which sees it whole: only the final
    # segment's loss is left for the completeness re-ask.
    assert extraction.completeness.reasked_pages == [8]
    assert extraction.completeness.uncited_pages == []
    assert extraction.completeness.added_records == 1
    assert envelope.summary is not None and envelope.summary.data.title == "Merged"
    assert envelope.answer is not None and envelope.answer.data.answer == "merged answer"
    planned = sum(w.input_tokens for w in windows)
    assert envelope.usage.input_tokens > planned  # reduce + completeness calls come on top
    assert envelope.usage.requests == 2 * len(context) + 2 + len(segments) + 1


def test_stages_one_by_one_and_window_result_is_json(tmp_path: Path, counter: TokenCounter) -> None:
    settings = Settings(**SETTINGS)
    backend = ScriptedBackend(reply, tokenizer=counter.tokenizer)
    engine = Engine(settings, backend, counter)
    [unit], _ = engine.units([make_pdf(tmp_path / "s.pdf", 2)])
    prepared = engine.prepare(unit)
    try:
        assert prepared.jobs == [(0, 0)]
        result = engine.run_window(prepared, (0, 0))
        again = WindowResult.model_validate_json(result.model_dump_json())
        assert again == result and [t.task for t in result.tasks] == ["summary", "ask", "extract"]
        assert result.usage.input_tokens == result.window.input_tokens
        [envelope] = engine.finish(prepared, [again])
    finally:
        prepared.close()
    assert envelope.status == "ok" and envelope.usage.input_tokens == envelope.plan.input_tokens


def test_failures_become_envelopes(tmp_path: Path, counter: TokenCounter) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    backend = ScriptedBackend(reply)
    envelope = analyze_document(empty, Settings(**SETTINGS), backend, counter)
    assert (
        envelope.status == "failed"
        and envelope.errors[0].code == EmptyFile.code
        and not backend.calls
    )
    roundtrip(envelope)
    engine = Engine(Settings(**SETTINGS), backend, counter)
    prepared = engine.prepare(engine.units([empty])[0][0])
    assert prepared.errors[0][0].code == EmptyFile.code and prepared.passes == []
    with pytest.raises(UsageError):  # a usage mistake, before any document is touched
        Engine(Settings(tasks=("ask",)), backend, counter)
    broken = analyze_document(
        make_pdf(tmp_path / "c.pdf", 1),
        Settings(**{**SETTINGS, "max_attempts": 1}),
        ScriptedBackend(lambda c, r: "no json"),
        counter,
    )
    assert broken.status == "failed" and {e.code for e in broken.errors} == {"validation_failed"}
    half = analyze_document(
        make_pdf(tmp_path / "d.pdf", 1),
        Settings(**{**SETTINGS, "max_attempts": 1}),
        ScriptedBackend(lambda c, r: "no" if "Answer" in r.instruction else reply(c, r)),
        counter,
    )
    assert half.status == "partial" and half.answer is None and half.summary is not None
    roundtrip(half)


def test_cross_document_question_shares_windows(tmp_path: Path, counter: TokenCounter) -> None:
    settings = Settings(**{**SETTINGS, "tasks": ("ask", "summary"), "share_windows": True})
    paths = [
        make_pdf(tmp_path / "x.pdf", 2, "Apple"),
        make_pdf(tmp_path / "y.pdf", 1, "Pear"),
        tmp_path / "missing.pdf",
    ]
    backend = ScriptedBackend(reply, tokenizer=counter.tokenizer)
    x, y, missing = Engine(settings, backend, counter).analyze(paths)
    assert missing.status == "failed"
    shared = [c for c in backend.calls if "Answer schema" in c.request.instruction]
    assert len(shared) == 1 and pages_in(shared[0].content) == [(0, 1), (0, 2), (1, 1)]
    for env, other in ((x, "y.pdf"), (y, "x.pdf")):
        assert env.status == "ok", env.errors
        assert env.answer is not None and env.answer.documents == [str(paths[0]), str(paths[1])]
        assert env.summary is not None
        ask_windows = [w for w in env.plan.windows if w.tasks == ["ask"]]
        assert len(ask_windows) == 1 and ask_windows[0].shared_with[0].endswith(other)
        assert env.usage.input_tokens == env.plan.input_tokens
        roundtrip(env)
    assert x.answer is not None and x.answer.grounding.grounded == 1
