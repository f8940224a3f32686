"""The text worker gives the serial text layer, concurrently; its failures are typed errors."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docvl.pipeline.errors import CorruptDocument, DocvlError, InternalError
from docvl.pipeline.ingest import textworker
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.render import iter_rendered
from docvl.pipeline.settings import Settings

SERIAL = Settings(text_worker=False, render_workers=1)
WORKER = Settings(text_worker=True, render_workers=1)
#: Text, forms, rotation, damage, permissions, JavaScript, scans: every part of a layer.
CASES = [
    ("good/irs_f1040_prefilled_2p.pdf", None),
    ("good/wikipedia_rotated90.pdf", None),
    ("good/tracemonkey_paper.pdf", None),
    ("good/arabic_rtl_1p.pdf", None),
    ("bad/missing_pdf_header.pdf", None),
    ("bad/permissions_only_copy_protected.pdf", None),
    ("bad/javascript_document_actions.pdf", None),
    ("bad/encrypted_user_password_1234.pdf", "1234"),
    ("scanned/old_book_scan_bad_ocr.pdf", None),
]


def crash(path: str, password: str | None) -> textworker.JobResult:
    """Stands in for the worker's job: the worker process dies."""
    os._exit(3)


def explode(path: str, password: str | None) -> textworker.JobResult:
    raise RuntimeError("boom")


def corrupt(path: str, password: str | None) -> textworker.JobResult:
    return ("corrupt", f"{Path(path).name}: the PDF cannot be read (FzErrorFormat: bad xref)")


@pytest.fixture
def worker() -> Iterator[None]:
    """A started, idle worker (a layer is only queued on a ready worker)."""
    assert textworker.start().result(timeout=300) is True
    yield
    textworker.shutdown()


def layer(doc: LoadedDocument) -> list[object]:
    return [
        (p.page, p.width_pt, p.height_pt, p.text, p.has_text_layer, [as_tuple(w) for w in p.words])
        for p in doc.pages
    ]


def as_tuple(word: object) -> tuple[object, ...]:
    return tuple(getattr(word, k) for k in ("text", "x0", "y0", "x1", "y1", "start", "end"))


@pytest.mark.parametrize(("name", "password"), CASES)
def test_worker_layer_is_the_serial_layer(
    corpus: Path, worker: None, name: str, password: str | None
) -> None:
    path = corpus / name
    serial = load_document(path, SERIAL.model_copy(update={"password": password}))
    assert not serial.text_pending
    doc = load_document(path, WORKER.model_copy(update={"password": password}), defer_text=True)
    assert doc.text_pending, "the layer should have gone to the idle worker"
    sizes = [(p.width_pt, p.height_pt) for p in doc.geometry]
    rendered = [r.image.size for r in iter_rendered(doc, WORKER)]  # before the text is joined
    assert doc.text_pending or len(rendered) == doc.page_count
    assert layer(doc) == layer(serial)
    assert [(p.width_pt, p.height_pt) for p in doc.pages] == sizes
    assert doc.warnings == serial.warnings
    assert rendered == [r.image.size for r in iter_rendered(serial, SERIAL)]
    assert not doc.text_pending


def test_joined_at_load_by_default(corpus: Path, worker: None) -> None:
    path = corpus / "good/tracemonkey_paper.pdf"
    doc = load_document(path, WORKER)
    assert not doc.text_pending
    assert doc.pages == load_document(path, SERIAL).pages


def test_off_setting_extracts_in_process(corpus: Path, worker: None) -> None:
    doc = load_document(corpus / "good/invoice.pdf", SERIAL, defer_text=True)
    assert not doc.text_pending
    assert doc.pages[0].text


def test_the_worker_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().text_worker is False
    monkeypatch.setenv("DOCVL_TEXT_WORKER", "true")
    assert Settings().text_worker is True
    assert Settings(text_worker=True).fingerprint() == Settings(text_worker=False).fingerprint()


def held(path: str, password: str | None) -> textworker.JobResult:
    """The worker's job, started only once ``path + '.go'`` exists."""
    go = Path(path + ".go")
    for _ in range(6000):
        if go.exists():
            break
        time.sleep(0.01)
    return textworker.extract_job(path, password)


def test_busy_worker_means_in_process(
    corpus: Path, worker: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "paper.pdf"
    shutil.copyfile(corpus / "good/tracemonkey_paper.pdf", path)
    monkeypatch.setattr(textworker, "extract_job", held)
    first = load_document(path, WORKER, defer_text=True)
    second = load_document(path, WORKER, defer_text=True)  # the worker holds the first one
    assert first.text_pending and not second.text_pending
    Path(f"{path}.go").touch()
    assert first.pages == second.pages


def test_worker_crash_is_internal_error_then_recovers(
    corpus: Path, worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = corpus / "good/invoice.pdf"
    monkeypatch.setattr(textworker, "extract_job", crash)
    with pytest.raises(InternalError, match="worker process died"):
        load_document(path, WORKER)
    doc = load_document(path, WORKER, defer_text=True)  # the pool was dropped: no worker yet
    assert not doc.text_pending
    monkeypatch.undo()
    assert textworker.start().result(timeout=300) is True
    again = load_document(path, WORKER, defer_text=True)
    assert again.text_pending
    assert again.pages == doc.pages


@pytest.mark.parametrize(("job", "error"), [(explode, InternalError), (corrupt, CorruptDocument)])
def test_worker_failure_is_the_documents_typed_error(
    corpus: Path,
    worker: None,
    monkeypatch: pytest.MonkeyPatch,
    job: object,
    error: type[DocvlError],
) -> None:
    monkeypatch.setattr(textworker, "extract_job", job)
    path = corpus / "good/invoice.pdf"
    with pytest.raises(error):
        load_document(path, WORKER)
    doc = load_document(path, WORKER, defer_text=True)
    assert doc.page_count == 1 and doc.text_pending
    for _ in range(2):  # raised on every read, never a half-loaded document
        with pytest.raises(error):
            _ = doc.pages
    with pytest.raises(error):
        _ = doc.warnings


def test_a_relative_path_is_read_from_the_callers_directory(
    corpus: Path, worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker keeps the directory it started in; a path relative to the caller's current one
    (``docvl plan good/x.pdf`` after a ``chdir``) is still the caller's file."""
    monkeypatch.chdir(corpus / "good")
    doc = load_document(Path("tracemonkey_paper.pdf"), WORKER, defer_text=True)
    assert doc.text_pending  # queued on the worker
    assert layer(doc) == layer(load_document(Path("tracemonkey_paper.pdf"), SERIAL))


def test_the_worker_ignores_ctrl_c_and_dies_with_its_parent(worker: None) -> None:
    """Ctrl-C reaches the whole process group: the worker leaves it to docvl (no traceback of
    its own); the kernel kills it when docvl dies (PDEATHSIG)."""
    import psutil

    pool = textworker._pool
    assert pool is not None
    [proc] = [psutil.Process(p.pid) for p in pool._processes.values()]  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(1)
    assert proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    assert textworker.start().result(timeout=60) is True
