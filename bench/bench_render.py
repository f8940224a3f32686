"""P1 preprocessing throughput and P2 peak RSS vs pages, side by side in one run.

    .venv/bin/python bench/bench_render.py [--corpus ../shared/corpus] [--max-pages 100]
        [--rounds 3] [--synthetic 100 500 2000]

P1, pages/s on every corpus PDF that loads (long documents cut to their first ``--max-pages``
pages, written to a temporary PDF, so that every column does the same pages; file in the page
cache; best of ``--rounds`` interleaved rounds), all at the exact size docvl plans
(``tokens.page_pixels``):
  * docvl           load_document (sha256, sniff, checks; the text layer + words extracted by the
                    text worker process meanwhile) + iter_rendered + joining the text layer
  * docvl+jpeg      the same plus encode_image (JPEG q90): bytes ready for an HTTP request
  * docvl 1 core    docvl with ``text_worker=False``: the text layer read in-process first
  * bare PyMuPDF    open + get_pixmap at the target size + PIL image, nothing else
  * bare pypdfium2  open + page.render at the target scale + to_pil, nothing else
  * pdf2image       convert_from_path(size=target of page 1) over the same pages, one call
Targets: docvl >= 0.9x the faster bare loop, >= 3x pdf2image.

P2, peak RSS (VmHWM of a fresh subprocess, and of its text worker) of preprocessing (load,
render, JPEG, drop, join the text) the 352-page book and synthetic PDFs of N pages generated
here. Target < 600 MB and flat in N.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pymupdf
import pypdfium2 as pdfium
from common import CORPUS, REPO, interleaved, peak_rss_mib, table
from pdf2image import convert_from_path
from PIL import Image

from docvl.pipeline.errors import DocvlError
from docvl.pipeline.ingest import textworker
from docvl.pipeline.ingest.geometry import page_pixels
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.render import encode_image, iter_rendered
from docvl.pipeline.settings import Settings

BOOK = "good/freeculture_book_352p.pdf"
SETTINGS = Settings(render_workers=1, text_worker=True)
ONE_CORE = Settings(render_workers=1, text_worker=False)


def docvl(path: Path, jpeg: bool, settings: Settings = SETTINGS) -> None:
    """Load (the text layer goes to the worker), render every page, then take the text in."""
    with load_document(path, settings, defer_text=True) as doc:
        for rp in iter_rendered(doc, settings):
            if jpeg:
                encode_image(rp.image)
        doc.join()


def bare_pymupdf(path: Path, targets: list[tuple[int, int]]) -> None:
    with pymupdf.open(path) as pdoc:
        for index, (height, width) in enumerate(targets):
            page = pdoc[index]
            matrix = pymupdf.Matrix(width / page.rect.width, height / page.rect.height)
            pix = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
            Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def bare_pdfium(path: Path, targets: list[tuple[int, int]]) -> None:
    pdf = pdfium.PdfDocument(path)
    try:
        for index, (_height, width) in enumerate(targets):
            page = pdf[index]
            page.render(scale=width / page.get_width()).to_pil()
            page.close()
    finally:
        pdf.close()


def bare_pdf2image(path: Path, targets: list[tuple[int, int]]) -> None:
    height, width = targets[0]
    convert_from_path(path, size=(width, height), use_cropbox=True)


def corpus_pdfs(corpus: Path) -> list[Path]:
    return sorted((corpus / "good").glob("*.pdf")) + sorted((corpus / "scanned").glob("*.pdf"))


def cut(path: Path, max_pages: int, tmp: Path) -> Path:
    with pymupdf.open(path) as src:
        if src.page_count <= max_pages:
            return path
        out = pymupdf.open()
        out.insert_pdf(src, from_page=0, to_page=max_pages - 1)
        target = tmp / f"{path.stem}_first{max_pages}.pdf"
        out.save(target)
        out.close()
    return target


def throughput(corpus: Path, max_pages: int, rounds: int) -> str:
    rows = []
    ratios: list[tuple[float, float, float, float]] = []
    worst_bare, worst_p2i = float("inf"), float("inf")
    textworker.start().result()  # started once per batch, as in a run
    with tempfile.TemporaryDirectory() as tmpdir:
        for original in corpus_pdfs(corpus):
            try:
                info = load_document(original, SETTINGS)
            except DocvlError as exc:
                print(f"  skipped {original.name}: {exc.code}", file=sys.stderr)
                continue
            info.close()
            path = cut(original, max_pages, Path(tmpdir))
            path.read_bytes()  # page cache
            with load_document(path, SETTINGS) as doc:
                targets = [page_pixels(p, doc.kind, SETTINGS) for p in doc.pages]
            n = len(targets)
            t = interleaved(
                {
                    "docvl": lambda p=path: docvl(p, False),
                    "jpeg": lambda p=path: docvl(p, True),
                    "serial": lambda p=path: docvl(p, False, ONE_CORE),
                    "mupdf": lambda p=path, t=targets: bare_pymupdf(p, t),
                    "pdfium": lambda p=path, t=targets: bare_pdfium(p, t),
                    "p2i": lambda p=path, t=targets: bare_pdf2image(p, t),
                },
                rounds,
            )
            pps = {k: n / v for k, v in t.items()}
            vs_bare = pps["docvl"] / max(pps["mupdf"], pps["pdfium"])
            vs_p2i = pps["docvl"] / pps["p2i"]
            faster = max(pps["mupdf"], pps["pdfium"])
            ratios.append((vs_bare, pps["jpeg"] / faster, pps["serial"] / faster, vs_p2i))
            worst_bare, worst_p2i = min(worst_bare, vs_bare), min(worst_p2i, vs_p2i)
            h, w = targets[0]
            rows.append(
                [original.name, str(n), f"{w}x{h}"]
                + [f"{pps[k]:.1f}" for k in ("docvl", "jpeg", "serial", "mupdf", "pdfium", "p2i")]
                + [f"**{vs_bare:.2f}x**", f"{pps['jpeg'] / faster:.2f}x"]
                + [f"{pps['serial'] / faster:.2f}x", f"**{vs_p2i:.1f}x**"]
            )
            print("  measured | " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    head = [
        "document",
        "pages",
        "size (p1)",
        "docvl p/s",
        "docvl+jpeg p/s",
        "docvl 1 core p/s",
        "bare PyMuPDF p/s",
        "bare pypdfium2 p/s",
        "pdf2image p/s",
        "docvl / faster bare (target >= 0.9)",
        "docvl+jpeg / faster bare",
        "docvl 1 core / faster bare",
        "docvl / pdf2image (target >= 3)",
    ]
    medians = [statistics.median(r[i] for r in ratios) for i in range(4)]
    return (
        table(head, rows)
        + f"\n\nWorst document: docvl/faster bare {worst_bare:.2f}x, docvl/pdf2image "
        f"{worst_p2i:.1f}x (best of {rounds} interleaved rounds, first {max_pages} pages).\n"
        f"Medians: docvl/faster bare {medians[0]:.2f}x, docvl+jpeg/faster bare {medians[1]:.2f}x, "
        f"docvl 1 core/faster bare {medians[2]:.2f}x, docvl/pdf2image {medians[3]:.1f}x."
    )


def synthetic(path: Path, pages: int) -> None:
    """A Letter PDF of ``pages`` pages: a heading, 40 lines of text, a table grid and a photo-like
    image (one image object shared by every page, as logos and letterheads are)."""
    doc = pymupdf.open()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 256, 256), False)
    pix.set_rect(pix.irect, (120, 160, 200))
    xref = 0
    for n in range(1, pages + 1):
        page = doc.new_page(width=612, height=792)
        page.insert_text((72, 72), f"Synthetic report, page {n}", fontsize=16)
        body = "\n".join(
            f"Line {i}: invoice {n * 100 + i} total {i * 17.5:.2f} EUR" for i in range(40)
        )
        page.insert_textbox(pymupdf.Rect(72, 90, 540, 600), body, fontsize=9)
        for row in range(6):
            page.draw_rect(pymupdf.Rect(72, 610 + row * 20, 540, 630 + row * 20), color=(0, 0, 0))
        rect = pymupdf.Rect(400, 40, 540, 100)
        if xref == 0:
            xref = page.insert_image(rect, pixmap=pix)
        else:
            page.insert_image(rect, xref=xref)
    doc.save(path, garbage=1, deflate=True)
    doc.close()


def memory_child(path: Path) -> None:
    """Peak RSS of this process and of its text worker (MiB), and the page count."""
    pages = 0
    textworker.start().result()
    with load_document(path, SETTINGS, defer_text=True) as doc:
        for rp in iter_rendered(doc, SETTINGS):
            encode_image(rp.image)
            pages += 1
        doc.join()
    main = peak_rss_mib()
    textworker.shutdown(wait=True)
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{main:.0f} {worker:.0f} {pages}")


def memory(corpus: Path, sizes: list[int]) -> str:
    rows = []
    peaks = []
    with tempfile.TemporaryDirectory() as tmpdir:
        docs = [(f"{BOOK.split('/')[1]}", corpus / BOOK)]
        for n in sizes:
            path = Path(tmpdir) / f"synthetic_{n}p.pdf"
            synthetic(path, n)
            docs.append((f"synthetic, {n} pages", path))
        for label, path in docs:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(path)],
                check=True,
                capture_output=True,
                text=True,
                cwd=REPO,
            ).stdout.split()
            peaks.append(float(out[0]) + float(out[1]))
            rows.append([label, out[2], out[0], out[1], f"{peaks[-1]:.0f}"])
            print("  measured RSS | " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    synth = peaks[1:]
    flat = f"{synth[-1] / synth[0]:.2f}x (sum)" if len(synth) > 1 else "n/a"
    return (
        table(
            [
                "document",
                "pages",
                "peak RSS MiB, main",
                "peak RSS MiB, text worker",
                "sum (target < 600)",
            ],
            rows,
        )
        + f"\n\nLargest / smallest synthetic peak: {flat} "
        f"for {sizes[-1] / sizes[0]:.0f}x the pages."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--max-pages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synthetic", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--only", choices=["P1", "P2"])
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    print(
        f"pymupdf {pymupdf.VersionBind}, pypdfium2 {pdfium.PYPDFIUM_INFO}, budget "
        f"{SETTINGS.max_pixels} px/page at {SETTINGS.dpi} dpi\n"
    )
    if args.only in (None, "P1"):
        print("### P1: preprocessing throughput\n")
        print(throughput(args.corpus, args.max_pages, args.rounds) + "\n")
    if args.only in (None, "P2"):
        print("### P2: peak RSS vs pages\n")
        print(memory(args.corpus, args.synthetic) + "\n")


if __name__ == "__main__":
    main()
