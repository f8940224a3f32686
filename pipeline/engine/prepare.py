"""Stage 1 of the engine: from input files to units of work, then to loaded, planned passes.

* A :class:`Unit` is the input files analysed together: one document, or every document of a
  cross-document question (``settings.share_windows`` with the ``ask`` task). The same content
  under two names is one unit (:func:`make_units`; both live in :mod:`.units`).
* :func:`prepare` loads and plans a unit into :class:`Pass` objects: a set of tasks over a set of
  documents, packed into windows. One document: one pass with every task. A cross-document question:
  one shared pass for ``ask`` over every document (their pages share windows) plus one pass per
  document for its other tasks. A file that cannot be loaded or planned gets an error record, never
  an exception.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Units and hashing live in engine.units (importable without the loaders); re-exported here.
from docvl.pipeline.engine.units import Unit as Unit
from docvl.pipeline.engine.units import make_units as make_units
from docvl.pipeline.engine.units import sha256_file as sha256_file
from docvl.pipeline.engine.units import shares_windows
from docvl.pipeline.errors import DocvlError, ErrorRecord, InternalError
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.planner import DocumentPlan, Plan, plan_loaded
from docvl.pipeline.result import Window
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.reduce import record_list_fields
from docvl.pipeline.tasks.specs import TaskSpec


@dataclass
class Pass:
    """Tasks over documents, planned together. ``docs`` are unit indices; spans in ``windows`` and
    ``plans`` index the pass's own document list (``docs[span.doc]``)."""

    specs: list[TaskSpec]
    docs: list[int]
    plans: list[DocumentPlan]
    #: The distinct windows to run, in order (a shared window appears once).
    windows: list[Window]
    shared: bool = False


@dataclass
class Prepared:
    """A loaded, planned unit. Holds the open documents: call :meth:`close` when done."""

    unit: Unit
    docs: list[LoadedDocument | None]
    passes: list[Pass]
    exact_tokens: bool
    #: Counts what a split window's halves and enlarged budgets leave of the context.
    counter: TokenCounter
    #: Load or plan failures per unit document (the document's record then says so).
    errors: dict[int, list[ErrorRecord]] = field(default_factory=dict)
    #: Seconds per unit document: ``load``, ``plan``.
    timings: list[dict[str, float]] = field(default_factory=list)

    @property
    def jobs(self) -> list[tuple[int, int]]:
        """Every (pass, window) to run."""
        return [(p, w) for p, ps in enumerate(self.passes) for w in range(len(ps.windows))]

    def loaded(self, pass_: Pass) -> list[LoadedDocument]:
        return [d for d in (self.docs[i] for i in pass_.docs) if d is not None]

    def close(self) -> None:
        for doc in self.docs:
            if doc is not None:
                doc.close()


def prepare(
    unit: Unit, settings: Settings, counter: TokenCounter, specs: Sequence[TaskSpec]
) -> Prepared:
    """Load and plan a unit. Bad input becomes error records; only bugs raise."""
    docs: list[LoadedDocument | None] = []
    prepared = Prepared(
        unit=unit, docs=docs, passes=[], exact_tokens=counter.exact, counter=counter
    )
    try:
        for i, path in enumerate(unit.paths):
            t0 = time.perf_counter()
            try:
                docs.append(load_document(path, settings))
            except DocvlError as exc:
                docs.append(None)
                prepared.errors[i] = [exc.record()]
            prepared.timings.append({"load": round(time.perf_counter() - t0, 6)})
        shared = shares_windows(settings, specs, len(unit.paths))
        own = [s for s in specs if not (shared and s.name == "ask")]
        if shared:
            _add_pass(
                prepared,
                [s for s in specs if s.name == "ask"],
                settings,
                counter,
                [i for i, d in enumerate(docs) if d is not None],
                shared=True,
            )
        single = settings.model_copy(update={"share_windows": False})
        for i, doc in enumerate(docs):
            if doc is not None and own:
                _add_own_passes(prepared, own, single, counter, i)
    except BaseException:
        prepared.close()
        raise
    return prepared


def _add_own_passes(
    prepared: Prepared, specs: list[TaskSpec], settings: Settings, counter: TokenCounter, i: int
) -> None:
    """One document's tasks. An extraction into record lists gets output-aware segments; the
    other tasks keep context-sized windows. When both plans are the same single window, every
    task shares one pass (one prefill)."""
    lists = [s for s in specs if s.name == "extract" and record_list_fields(s.model)]
    if not lists:
        _add_pass(prepared, specs, settings, counter, [i])
        return
    rest = [s for s in specs if s not in lists]
    seg = _plan(prepared, lists, settings, counter, [i], segments=True)
    ctx = _plan(prepared, rest or lists, settings, counter, [i])
    one = [w.spans for w in seg.documents[0].windows] == [w.spans for w in ctx.documents[0].windows]
    if one and len(seg.documents[0].windows) == 1:
        _add_pass(prepared, specs, settings, counter, [i])
        return
    if rest:
        _add_pass(prepared, rest, settings, counter, [i], plan=ctx)
    _add_pass(prepared, lists, settings, counter, [i], plan=seg)


def _plan(
    prepared: Prepared,
    specs: list[TaskSpec],
    settings: Settings,
    counter: TokenCounter,
    members: list[int],
    *,
    segments: bool = False,
) -> Plan:
    return plan_loaded(
        [d for d in (prepared.docs[i] for i in members) if d is not None],
        settings,
        counter,
        {s.name: s.instruction for s in specs},
        segments=segments,
    )


def _add_pass(
    prepared: Prepared,
    specs: list[TaskSpec],
    settings: Settings,
    counter: TokenCounter,
    members: list[int],
    *,
    shared: bool = False,
    plan: Plan | None = None,
) -> None:
    if not members:
        return
    t0 = time.perf_counter()
    plan = plan or _plan(prepared, specs, settings, counter, members)
    prepared.exact_tokens = plan.exact_tokens
    plans = plan.documents
    for unit_index, doc_plan in zip(members, plans, strict=True):
        if doc_plan.error is not None:
            prepared.errors.setdefault(unit_index, []).append(doc_plan.error)
    seen: set[tuple[tuple[int, int, int], ...]] = set()
    windows: list[Window] = []
    for doc_plan in plans:
        for w in doc_plan.windows:
            key = tuple((s.doc, s.first_page, s.last_page) for s in w.spans)
            if key not in seen:
                seen.add(key)
                windows.append(w)
    prepared.passes.append(
        Pass(specs=specs, docs=members, plans=plans, windows=windows, shared=shared)
    )
    seconds = round(time.perf_counter() - t0, 6)
    for i in members:
        timing = prepared.timings[i]
        timing["plan"] = round(timing.get("plan", 0.0) + seconds, 6)


def document_plan(prepared: Prepared, i: int) -> DocumentPlan:
    """The plan of the unit's document ``i`` over every pass it is in: the windows the engine runs
    for it, in pass order, each naming its tasks and the other documents sharing it."""
    path = prepared.unit.paths[i]
    errors = prepared.errors.get(i, [])
    doc = prepared.docs[i]
    if doc is None:
        return DocumentPlan(path=str(path), status="failed", error=errors[0] if errors else None)
    windows: list[Window] = []
    plans: list[DocumentPlan] = []
    for pass_ in prepared.passes:
        if i not in pass_.docs:
            continue
        member = pass_.docs.index(i)
        plans.append(pass_.plans[member])
        names = [str(prepared.unit.paths[d]) for d in pass_.docs]
        base = len(windows)
        windows.extend(
            w.model_copy(
                update={
                    "index": base + k,
                    "tasks": [s.name for s in pass_.specs],
                    "shared_with": sorted({names[s.doc] for s in w.spans if s.doc != member}),
                }
            )
            for k, w in enumerate(pass_.plans[member].windows)
        )
    failed = bool(errors) and not windows
    return DocumentPlan(
        path=str(path),
        kind=doc.kind.value,
        status="failed" if failed else "ok",
        strategy="segments" if any(p.strategy == "segments" for p in plans) else "context",
        sha256=doc.sha256,
        pages=doc.page_count,
        page_tokens=plans[0].page_tokens if plans else [],
        windows=windows,
        input_tokens=sum(p.input_tokens for p in plans),
        estimated_cost_usd=round(sum(p.estimated_cost_usd for p in plans), 6),
        warnings=list(doc.warnings),
        error=errors[0] if errors else None,
    )


def plan_documents(
    paths: Sequence[Path], settings: Settings, counter: TokenCounter, specs: Sequence[TaskSpec]
) -> Plan:
    """The plan the engine would run (``docvl plan``): every unit loaded, planned and closed; one
    entry per path, a bad file as a failed entry. No model call."""
    units, of_path = make_units(paths, settings, specs)
    per_unit: list[list[DocumentPlan]] = []
    for unit in units:
        try:
            prepared = prepare(unit, settings, counter, specs)
        except (
            Exception
        ) as exc:  # a bug in one file's load or plan: its entry says so, not the batch
            record = InternalError(f"{type(exc).__name__}: {exc}").record()
            per_unit.append(
                [DocumentPlan(path=str(p), status="failed", error=record) for p in unit.paths]
            )
            continue
        try:
            per_unit.append([document_plan(prepared, i) for i in range(len(unit.paths))])
        finally:
            prepared.close()
    documents = []
    for path, u in zip(paths, of_path, strict=True):
        unit = units[u]
        entry = per_unit[u][unit.paths.index(path) if path in unit.paths else 0]
        documents.append(entry.model_copy(update={"path": str(path)}))
    return Plan(
        context_window=settings.context_window,
        max_output_tokens=settings.max_output_tokens,
        exact_tokens=counter.exact,
        framing_tokens=max(counter.framing(s.instruction) for s in specs),
        documents=documents,
    )
