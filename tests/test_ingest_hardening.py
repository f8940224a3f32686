"""Per-document isolation and budgets at load/render (issue 9): every hostile input ends as that
document's typed error, fast, and the rest of the batch still plans."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import craftkit as ck
import pymupdf
import pytest

from docvl.pipeline.errors import DocvlError
from docvl.pipeline.ingest import load as load_module
from docvl.pipeline.ingest.load import clean_text, load_document
from docvl.pipeline.ingest.render import iter_rendered
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.planner import plan_paths
from docvl.pipeline.policy import FAILURE_POLICY, Policy
from docvl.pipeline.settings import Settings

INSTRUCTION = "Summarize the document."
CLI = "import sys; from docvl.cli import main; sys.exit(main())"
CAP_CODES = (
    "file_too_large",
    "too_many_pages",
    "too_many_pixels",
    "package_too_large",
    "conversion_timeout",
    "conversion_memory",
)


def code_of(path: Path, settings: Settings | None = None) -> str:
    with pytest.raises(DocvlError) as info:
        load_document(path, settings or Settings())
    return info.value.code


def test_every_cap_code_is_final() -> None:
    assert all(FAILURE_POLICY[code] is Policy.FINAL for code in CAP_CODES)


def test_cap_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCVL_MAX_PAGES", "7")
    monkeypatch.setenv("DOCVL_MAX_FILE_BYTES", "1000")
    monkeypatch.setenv("DOCVL_MAX_PAGE_PIXELS", "5000")
    monkeypatch.setenv("DOCVL_MAX_UNPACKED_BYTES", "9000")
    monkeypatch.setenv("DOCVL_SLIDE_MEMORY_MB", "512")
    s = Settings()
    assert (s.max_pages, s.max_file_bytes, s.max_page_pixels) == (7, 1000, 5000)
    assert (s.max_unpacked_bytes, s.slide_memory_mb) == (9000, 512)


# --- inputs that are not regular files ------------------------------------------------------------


def test_fifo_is_a_typed_error_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(code_of(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result == ["usage_error"], "loading a FIFO hung or did not fail typed"


def test_run_hashes_a_fifo_without_opening_it(tmp_path: Path) -> None:
    """``run`` hashes every input before loading (engine.prepare.sha256_file): a FIFO hung it."""
    from docvl.pipeline.engine.prepare import sha256_file

    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    result: list[str | None] = []
    worker = threading.Thread(target=lambda: result.append(sha256_file(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result == [None], "hashing a FIFO hung"


def test_directory_symlink_loop_and_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.pdf"
    folder.mkdir()
    loop = tmp_path / "loop.pdf"
    loop.symlink_to(tmp_path / "loop2.pdf")
    (tmp_path / "loop2.pdf").symlink_to(loop)
    locked = ck.blank_pdf(tmp_path / "locked.pdf", 1)
    locked.chmod(0)
    try:
        for path in (folder, loop, tmp_path / "missing.pdf"):
            assert code_of(path) == "usage_error"
        if os.geteuid() != 0:  # root reads mode-000 files; the check then proves nothing
            assert code_of(locked) == "usage_error"
    finally:
        locked.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_undecodable_file_name_gives_an_encodable_message(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad-\xff\xfe.pdf")
    path = tmp_path / name
    path.write_text("# markdown, not a pdf\n")
    with pytest.raises(DocvlError) as info:
        load_document(path, Settings())
    assert info.value.code == "unsupported_format"
    info.value.message.encode("utf-8")  # no lone surrogate left
    assert "\ufffd" in info.value.message


def test_a_pdf_whose_name_is_not_utf8_loads_and_renders(tmp_path: Path) -> None:
    """MuPDF takes only UTF-8 file names; such a PDF is read from memory instead."""
    staged = tmp_path / "plain.pdf"
    doc = pymupdf.open()  # type: ignore[no-untyped-call]
    doc.new_page().insert_text((72, 72), "hello from a strange name")
    doc.save(staged)
    path = tmp_path / os.fsdecode(b"bad-\xff\xfe.pdf")
    os.replace(staged, path)
    with load_document(path, Settings()) as loaded:
        assert "hello from a strange name" in loaded.pages[0].text
        [page] = list(iter_rendered(loaded, Settings()))
        assert page.image.size[0] > 0


@pytest.mark.slow
def test_cli_output_survives_an_ascii_terminal(tmp_path: Path) -> None:
    """Names and warnings the output encoding cannot hold are escaped (stdout/stderr ASCII)."""
    import subprocess
    import sys

    path = ck.blank_pdf(tmp_path / "r\u00e9sum\u00e9-\u0644.pdf", 1)
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(repo)}
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-c", CLI, "plan", str(path), *extra],
            capture_output=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode("ascii", "replace")
        assert b"internal error" not in done.stderr and b"Traceback" not in done.stderr


def test_clean_text_removes_controls_and_surrogates() -> None:
    assert clean_text("MuPDF: bad \x1b[31mfont \udcff\x00") == "MuPDF: bad [31mfont \ufffd"
    assert clean_text("ok\nnext\tcol") == "ok\nnext\tcol"


def test_mupdf_warning_with_unencodable_characters_is_cleaned(tmp_path: Path) -> None:
    """A damaged PDF whose repair warnings quote raw bytes: the warnings stay encodable."""
    data = ck.blank_pdf(tmp_path / "w.pdf", 1).read_bytes()
    data = data.replace(b"endobj", b"endobj\n\xff\xfe\x80\x1b[31m\xed\xa0\x80garbage ", 1)
    (tmp_path / "w.pdf").write_bytes(data)
    doc = load_document(tmp_path / "w.pdf", Settings())
    assert doc.warnings, "the damage produced no warning"
    for warning in doc.warnings:
        warning.encode("utf-8")
        assert "\x1b" not in warning


# --- PDFs -----------------------------------------------------------------------------------------


def test_page_tree_declaring_ten_billion_pages(tmp_path: Path) -> None:
    path = ck.pdf_with_count(tmp_path / "count.pdf", 9999999999)
    assert code_of(path) in ("corrupt_document", "too_many_pages")


def test_ten_thousand_blank_pages_hit_the_page_cap(tmp_path: Path) -> None:
    path = ck.blank_pdf(tmp_path / "blank.pdf", 10_000)
    assert code_of(path) == "too_many_pages"
    assert code_of(ck.blank_pdf(tmp_path / "three.pdf", 3), Settings(max_pages=2)) == (
        "too_many_pages"
    )


def test_pdf_page_drawing_a_huge_image_is_refused_before_rendering(tmp_path: Path) -> None:
    path = ck.pdf_with_big_image(tmp_path / "bomb.pdf", 50_000, 50_000)
    with pytest.raises(DocvlError) as info:
        load_document(path, Settings())
    assert info.value.code == "too_many_pixels" and info.value.page == 1


def test_file_size_cap(tmp_path: Path) -> None:
    path = ck.blank_pdf(tmp_path / "one.pdf", 1)
    assert code_of(path, Settings(max_file_bytes=100)) == "file_too_large"


# --- images ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: ck.png_declaring(p / "bomb.png", 50_000, 50_000), "too_many_pixels"),
        (lambda p: ck.png_declaring(p / "bomb169.png", 13_000, 13_000), "too_many_pixels"),
        (lambda p: ck.jpeg_declaring(p / "bomb.jpg", 20_000, 20_000), "too_many_pixels"),
    ],
)
def test_pixel_bombs_are_refused_before_decoding(tmp_path: Path, make: object, code: str) -> None:
    assert callable(make)
    assert code_of(make(tmp_path)) == code


def test_multi_frame_tiff_hits_the_frame_cap(tmp_path: Path) -> None:
    path = ck.tiff_frames(tmp_path / "frames.tiff", 12)
    assert code_of(path, Settings(max_pages=10)) == "too_many_pages"
    with load_document(path, Settings()) as doc:  # within the cap: first frame, with a warning
        assert doc.page_count == 1 and any("12 frames" in w for w in doc.warnings)


# --- isolation ------------------------------------------------------------------------------------


def test_unexpected_exception_in_a_loader_is_that_documents_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the PDF loader raises a bare exception for one file of the batch."""
    victim = ck.blank_pdf(tmp_path / "victim.pdf", 1)
    others = [ck.blank_pdf(tmp_path / f"ok{i}.pdf", 2) for i in range(2)]
    real = load_module.load_pdf

    def flaky(path: Path, settings: Settings, digest: str) -> object:
        if path.name == "victim.pdf":
            raise ZeroDivisionError("injected fault")
        return real(path, settings, digest)

    monkeypatch.setattr(load_module, "load_pdf", flaky)
    plan = plan_paths(
        [others[0], victim, others[1]], Settings(), TokenCounter(), {"summary": INSTRUCTION}
    )
    first, bad, last = plan.documents
    assert bad.status == "failed" and bad.error is not None
    assert bad.error.code == "internal_error"
    assert "ZeroDivisionError" in bad.error.message and "injected fault" in bad.error.message
    assert first.status == last.status == "ok" and first.windows and last.windows


def test_a_batch_of_hostile_files_plans_every_good_one(tmp_path: Path) -> None:
    hostile = [
        ck.pdf_with_count(tmp_path / "count.pdf", 9999999999),
        ck.png_declaring(tmp_path / "bomb.png", 50_000, 50_000),
        ck.blank_pdf(tmp_path / "many.pdf", 30),
        tmp_path / "missing.pdf",
    ]
    fifo = tmp_path / "fifo.pdf"
    os.mkfifo(fifo)
    good = ck.blank_pdf(tmp_path / "good.pdf", 2)
    paths = [*hostile, fifo, good]
    plan = plan_paths(paths, Settings(max_pages=20), TokenCounter(), {"summary": INSTRUCTION})
    assert len(plan.documents) == len(paths)
    *bad, ok = plan.documents
    assert all(d.status == "failed" and d.error is not None for d in bad)
    assert [d.error.code for d in bad if d.error] == [
        bad[0].error.code if bad[0].error else "",
        "too_many_pixels",
        "too_many_pages",
        "usage_error",
        "usage_error",
    ]
    assert ok.status == "ok"


def test_unexpected_render_exception_is_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docvl.pipeline.ingest import render as render_module

    path = ck.blank_pdf(tmp_path / "one.pdf", 1)

    def broken(*args: object) -> object:
        raise KeyError("injected")

    monkeypatch.setattr(render_module, "render_pdf_page", broken)
    with load_document(path, Settings()) as doc, pytest.raises(DocvlError) as info:
        list(iter_rendered(doc, Settings()))
    assert info.value.code == "internal_error" and "KeyError" in info.value.message
