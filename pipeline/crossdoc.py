"""Cross-document questions: ``settings.share_windows`` with the ``ask`` task over several files.

All loadable documents are planned together for the question alone, so their pages share windows
(``<document N: name>`` headers tell them apart); each shared window runs once and the partial answers are
reduced into one answer. Every document's envelope then carries that answer (``answer.documents`` lists
the files it was drawn from), the shared windows in its plan (``shared_with`` names the other files) and
their usage, so the usage invariant holds per envelope (totals over envelopes count shared windows once
per document). The other tasks (summary, extract) run per document as usual.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.analyze import (
    Prepared,
    WindowResult,
    finish,
    model_info,
    prepare_loaded,
    run_window,
)
from pipeline.backends.base import ModelBackend
from pipeline.count import TokenCounter
from pipeline.document import LoadedDocument
from pipeline.errors import DocvlError, ErrorRecord
from pipeline.finish import _partials, combine, status_of
from pipeline.grounding import PageText, ground
from pipeline.plan import plan_loaded
from pipeline.result import (
    AnswerOutput,
    PlanSummary,
    ResultEnvelope,
    Source,
    Timings,
    Usage,
    WindowSummary,
    failed_envelope,
)
from pipeline.settings import Settings
from pipeline.tasks import TaskSpec, task_specs


def _load_all(paths: Sequence[Path], settings: Settings) -> tuple[list[LoadedDocument | DocvlError], list[float]]:
    from pipeline.load import load_document

    loaded: list[LoadedDocument | DocvlError] = []
    seconds: list[float] = []
    for path in paths:
        t0 = time.perf_counter()
        try:
            loaded.append(load_document(path, settings))
        except DocvlError as exc:
            loaded.append(exc)
        seconds.append(round(time.perf_counter() - t0, 6))
    return loaded, seconds


def _own_envelope(doc: LoadedDocument, specs: list[TaskSpec], settings: Settings, backend: ModelBackend,
                  counter: TokenCounter) -> ResultEnvelope:
    """The per-document tasks (all but ``ask``) as in ``analyze_document``."""
    source = Source(path=str(doc.path), sha256=doc.sha256, kind=doc.kind.value, pages=doc.page_count)
    if not specs:
        return ResultEnvelope(source=source, status="ok", warnings=list(doc.warnings),
                              model=model_info(backend, settings), plan=PlanSummary(exact_tokens=counter.exact))
    own = settings.model_copy(update={"share_windows": False})
    try:
        prepared = prepare_loaded(doc, own, counter, specs)
        results = [run_window(prepared, w.index, backend, own) for w in prepared.plan.windows]
        return finish(prepared, results, backend, own)
    except DocvlError as exc:
        envelope = failed_envelope(str(doc.path), [exc.record()], model=model_info(backend, settings))
        envelope.source = source
        return envelope


def analyze_shared(paths: Sequence[Path], settings: Settings, backend: ModelBackend,
                   counter: TokenCounter) -> Iterator[ResultEnvelope]:
    try:
        specs = task_specs(settings)
    except DocvlError as exc:
        for path in paths:
            yield failed_envelope(str(path), [exc.record()], model=model_info(backend, settings))
        return
    ask = next(s for s in specs if s.name == "ask")
    own_specs = [s for s in specs if s.name != "ask"]
    loaded, load_s = _load_all(paths, settings)
    ok = [d for d in loaded if isinstance(d, LoadedDocument)]
    try:
        shared = _run_shared(ok, ask, settings, backend, counter)
        for path, doc, seconds in zip(paths, loaded, load_s, strict=True):
            t0 = time.perf_counter()
            if isinstance(doc, DocvlError):
                yield failed_envelope(str(path), [doc.record()], model=model_info(backend, settings),
                                      total_s=seconds)
                continue
            envelope = _own_envelope(doc, own_specs, settings, backend, counter)
            _attach_shared(envelope, ok.index(doc), shared, ask, settings)
            envelope.source.path = str(path)
            envelope.timings.load = seconds
            envelope.timings.total = round(envelope.timings.total + seconds + time.perf_counter() - t0
                                           + shared["seconds"], 6)
            yield envelope
    finally:
        for doc in ok:
            doc.close()


def _run_shared(ok: list[LoadedDocument], ask: TaskSpec, settings: Settings, backend: ModelBackend,
                counter: TokenCounter) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"docs": ok, "windows": {}, "doc_windows": {}, "answer": None, "usage": Usage(),
                           "errors": [], "doc_errors": {}, "seconds": 0.0}
    if not ok:
        return out
    plan = plan_loaded(ok, settings, counter, [ask.instruction])
    for i, doc_plan in enumerate(plan.documents):
        if doc_plan.status == "failed" and doc_plan.error is not None:
            out["doc_errors"][i] = doc_plan.error
            continue
        prepared = Prepared(path=ok[i].path, doc=ok[i], plan=doc_plan, specs=[ask], exact_tokens=plan.exact_tokens,
                            docs=ok, doc_index=i)
        for w in doc_plan.windows:
            key = tuple((s.doc, s.first_page, s.last_page) for s in w.spans)
            if key not in out["windows"]:
                out["windows"][key] = (w, run_window(prepared, w.index, backend, settings))
            out["doc_windows"].setdefault(i, []).append(key)
    results: list[WindowResult] = [r for _, r in out["windows"].values()]
    errors: list[ErrorRecord] = []
    partials = _partials(ask, results, errors)
    if partials:
        usage = Usage()
        out["answer"] = combine(ask, partials, backend, settings, usage, errors)
        out["usage"] = usage
    out["errors"] = [e for e in errors if e.message.startswith("reduce:")]
    out["seconds"] = round(time.perf_counter() - t0, 6)
    return out


def _chooser(docs: Sequence[LoadedDocument], own: int) -> Any:
    texts = [PageText(d.pages) for d in docs]

    def choose(record: Mapping[str, Any]) -> PageText:
        number = record.get("document")
        return texts[number - 1] if isinstance(number, int) and 1 <= number <= len(texts) else texts[own]

    return choose


def _attach_shared(envelope: ResultEnvelope, i: int, shared: dict[str, Any], ask: TaskSpec,
                   settings: Settings) -> None:
    docs: list[LoadedDocument] = shared["docs"]
    if i in shared["doc_errors"]:
        envelope.errors.append(shared["doc_errors"][i])
    usage = Usage()
    timings = Timings()
    for key in shared["doc_windows"].get(i, []):
        window, result = shared["windows"][key]
        envelope.plan.windows.append(WindowSummary(
            index=len(envelope.plan.windows), first_page=window.first_page, last_page=window.last_page,
            input_tokens=window.input_tokens, images=window.images, tasks=["ask"],
            shared_with=sorted({str(docs[s.doc].path) for s in window.spans if s.doc != i})))
        envelope.plan.input_tokens += window.input_tokens
        usage.add(result.usage)
        envelope.errors.extend(e for tp in result.tasks if tp.error is not None for e in [tp.error])
        envelope.errors.extend(e for e in result.errors if e not in envelope.errors)
        timings.render += result.timings.get("render", 0.0)
        timings.prefill += result.timings.get("prefill", 0.0)
        timings.generate += result.timings.get("generate", 0.0)
    usage.add(shared["usage"])
    envelope.errors.extend(shared["errors"])
    if shared["answer"] is not None and i in shared["doc_windows"]:
        envelope.answer = AnswerOutput(
            question=ask.question or "", data=shared["answer"], documents=[str(d.path) for d in docs],
            grounding=ground({"quotes": shared["answer"].model_dump(mode="json")["quotes"]}, _chooser(docs, i)))
    envelope.usage = envelope.usage.add(usage).priced(settings.price_input_per_mtok, settings.price_output_per_mtok)
    envelope.timings.render += timings.render
    envelope.timings.prefill += timings.prefill
    envelope.timings.generate += timings.generate
    envelope.status = status_of(envelope, list(dict.fromkeys(settings.tasks)))
