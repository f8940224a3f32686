"""Fuzzing sniff + load + render over mutated PDFs, PPTX packages and images (issue 9).

Property: whatever the bytes, ``load_document`` either returns a document whose pages all render
to their planned size, or raises a :class:`DocvlError` that is not ``internal_error`` (a typed
outcome for bad input); nothing else escapes, and nothing hangs (pytest-timeout).

CI runs a short bounded pass (``DOCVL_FUZZ_EXAMPLES``, default 30 per target). The long pass
recorded in docs/fuzzing.md::

    DOCVL_FUZZ_EXAMPLES=100000 DOCVL_FUZZ_DEADLINE_S=200 nice -n 19 \\
        python -m pytest tests/test_fuzz_ingest.py -q -s -m "not slow" -p no:cacheprovider

(each target stops at its examples or its deadline, whichever comes first; about 3 x 200 s).

Decks are fuzzed without LibreOffice (``slides`` stage only: staging, link breaking and
python-pptx), because a conversion costs seconds; a separate slow test converts a few mutants.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import craftkit as ck
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from docvl.pipeline.errors import DocvlError
from docvl.pipeline.ingest.document import DocKind
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.render import iter_rendered
from docvl.pipeline.ingest.sandbox import stage_pptx
from docvl.pipeline.ingest.slides import pptx_slide_texts
from docvl.pipeline.ingest.sniff import sniff_details
from docvl.pipeline.settings import Settings

EXAMPLES = int(os.environ.get("DOCVL_FUZZ_EXAMPLES", "30"))
#: Wall-time budget of one fuzz target (the long pass stops here even with examples left).
DEADLINE_S = float(os.environ.get("DOCVL_FUZZ_DEADLINE_S", "60"))
#: Small pages, few of them: the fuzzer looks for crashes, not slow renders.
FUZZ_SETTINGS = Settings(max_pixels=64 * 32 * 32, max_pages=50, max_page_pixels=20_000_000)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    # no shrinking: a fuzz finding is kept as it was found (and the stop below stays cheap)
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seed_pdf(tmp: Path) -> bytes:
    import pymupdf

    doc = pymupdf.open()  # type: ignore[no-untyped-call]
    page = doc.new_page()  # type: ignore[no-untyped-call]
    page.insert_text((72, 72), "Invoice 42\nTotal: 17.50 EUR")  # type: ignore[no-untyped-call]
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 8, 8), False)
    page.insert_image(pymupdf.Rect(100, 100, 200, 200), pixmap=pix)  # type: ignore[no-untyped-call]
    doc.new_page().insert_text((72, 72), "Page two")  # type: ignore[no-untyped-call]
    data: bytes = doc.tobytes(garbage=0, deflate=False)  # type: ignore[no-untyped-call]
    doc.close()  # type: ignore[no-untyped-call]
    return data


def _seed_pptx(tmp: Path) -> bytes:
    pic = tmp / "pic.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(pic)
    return ck.deck(tmp / "seed.pptx", slides=2, picture=pic).read_bytes()


def _seed_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 9), (9, 8, 7)).save(buf, format="PNG")
    return buf.getvalue()


SEEDS_DIR = Path(os.environ.get("DOCVL_FUZZ_TMP", "/tmp")) / f"docvl-fuzz-{os.getpid()}"
SEEDS_DIR.mkdir(parents=True, exist_ok=True)
SEED_PDF = _seed_pdf(SEEDS_DIR)
SEED_PPTX = _seed_pptx(SEEDS_DIR)
SEED_PNG = _seed_png()


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """Byte-level mutations of ``seed``: overwrite, insert, delete, truncate, splice numbers."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "number", "chunk"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "number":
            digits = str(draw(st.sampled_from([0, -1, 2**31, 2**32 + 1, 9999999999, 7])))
            data[at : at + 1] = digits.encode()
        else:
            other = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[other : other + draw(st.integers(1, 256))]
    return bytes(data)


@st.composite
def mutated_zip(draw: st.DrawFn, seed: bytes) -> bytes:
    """A deck with one XML part mutated (the zip stays readable) or the raw zip bytes mutated."""
    if draw(st.booleans()):
        return draw(mutated(seed))
    with zipfile.ZipFile(io.BytesIO(seed)) as zf:
        parts = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    xml = sorted(n for n in parts if n.endswith((".xml", ".rels")))
    name = draw(st.sampled_from(xml))
    parts[name] = draw(mutated(parts[name]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in parts.items():
            zf.writestr(n, d)
    return buf.getvalue()


class DeadlineReached(Exception):
    """Raised by the first example after a target's wall-time budget: ends the hypothesis run
    (caught by the test, which then passes)."""


class Budget:
    """Stops a target once its wall-time budget is spent (:class:`DeadlineReached`), and keeps
    the slowest input (``SEEDS_DIR/slowest-<target>``) so a near-hang can be replayed."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.examples = 0
        self.slowest = 0.0

    def check(self, target: str, path: Path, **kwargs: bool) -> None:
        started = time.monotonic()
        try:
            check_outcome(path, **kwargs)
        finally:
            took = time.monotonic() - started
            if took > self.slowest:
                self.slowest = took
                (SEEDS_DIR / f"slowest-{target}").write_bytes(path.read_bytes())

    def spend(self) -> None:
        if time.monotonic() - self.start > DEADLINE_S:
            raise DeadlineReached
        self.examples += 1

    def run(self, target: str, test: Callable[[], None]) -> None:
        with contextlib.suppress(DeadlineReached):
            test()
        self.report(target)

    def report(self, target: str) -> None:
        """One line per target (shown with ``-s``), recorded by the long pass in docs/fuzzing.md."""
        elapsed = time.monotonic() - self.start
        print(
            f"\nfuzz {target}: {self.examples} examples checked in {elapsed:.0f} s; slowest "
            f"{self.slowest:.2f} s ({SEEDS_DIR / ('slowest-' + target)})"
        )


def check_outcome(path: Path, *, convert: bool = True) -> None:
    """The property: a typed, non-internal outcome; a loaded document renders every page."""
    try:
        sniffed = sniff_details(path)
        if sniffed.kind is DocKind.PPTX and not convert:
            work = path.with_suffix(".staged.pptx")
            warnings: list[str] = []
            stage_pptx(path, work, FUZZ_SETTINGS)
            pptx_slide_texts(work, warnings, path.name)
            return
        with load_document(path, FUZZ_SETTINGS) as doc:
            for rendered in iter_rendered(doc, FUZZ_SETTINGS):
                assert rendered.image.mode == "RGB"
    except DocvlError as exc:
        assert exc.code != "internal_error", f"{path}: {exc.message}"
        exc.message.encode("utf-8")  # always printable


@pytest.mark.timeout(int(2 * DEADLINE_S) + 120)
def test_fuzz_pdf(tmp_path: Path) -> None:
    budget = Budget()

    @FUZZ
    @given(data=mutated(SEED_PDF))
    def run(data: bytes) -> None:
        budget.spend()
        path = tmp_path / "fuzz.pdf"
        path.write_bytes(data)
        budget.check("pdf", path)

    budget.run("pdf", run)


@pytest.mark.timeout(int(2 * DEADLINE_S) + 120)
def test_fuzz_pptx_package(tmp_path: Path) -> None:
    budget = Budget()

    @FUZZ
    @given(data=mutated_zip(SEED_PPTX))
    def run(data: bytes) -> None:
        budget.spend()
        path = tmp_path / "fuzz.pptx"
        path.write_bytes(data)
        budget.check("pptx", path, convert=False)

    budget.run("pptx", run)


@pytest.mark.timeout(int(2 * DEADLINE_S) + 120)
def test_fuzz_image(tmp_path: Path) -> None:
    budget = Budget()

    @FUZZ
    @given(data=mutated(SEED_PNG))
    def run(data: bytes) -> None:
        budget.spend()
        path = tmp_path / "fuzz.png"
        path.write_bytes(data)
        budget.check("image", path)

    budget.run("image", run)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fuzzed_decks_convert_to_typed_outcomes(tmp_path: Path) -> None:
    """A few mutated decks through LibreOffice (seconds each): still a typed outcome."""

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=mutated_zip(SEED_PPTX))
    def run(data: bytes) -> None:
        path = tmp_path / "fuzz.pptx"
        path.write_bytes(data)
        check_outcome(path)

    run()


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parent / "data" / "fuzz").iterdir()), ids=lambda p: p.name
)
def test_fuzz_findings_stay_fixed(path: Path, tmp_path: Path) -> None:
    """Inputs the fuzzer found (docs/fuzzing.md), kept as regression cases."""
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    check_outcome(copy)
