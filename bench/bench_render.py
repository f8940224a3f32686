"""Rendering benchmark: docvl preprocessing vs bare engines, same pixel sizes, one run.

    .venv/bin/python bench/bench_render.py [--corpus ../shared/corpus] [--pdf2image-pages 100]

Throughput (pages/s, first page to last, file already in the page cache):
  * docvl            load_document (text layer, warnings) + iter_rendered at the token budget
                     (exact tokens.page_pixels size), render_workers=1 and =2
  * docvl+jpeg       the same plus encode_image (JPEG q90), i.e. bytes ready for a request
  * bare pymupdf     open + get_pixmap at the same target size + PIL image, nothing else
  * docvl pdf2image  settings.renderer = "pdf2image" (first N pages of long documents)
  * bare pdf2image   convert_from_path(size=target of page 1) over the same pages in one call
Peak memory (ru_maxrss of a fresh subprocess) rendering the whole 352-page book: streaming vs
collecting every page image in a list (VmHWM of a fresh subprocess).
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pymupdf  # noqa: E402
from pdf2image import convert_from_path  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.ingest.geometry import page_pixels  # noqa: E402
from pipeline.ingest.load import load_document  # noqa: E402
from pipeline.ingest.render import PARALLEL_MIN_PAGES, encode_image, iter_rendered  # noqa: E402
from pipeline.settings import Settings  # noqa: E402

DOCS = [
    "good/freeculture_book_352p.pdf",
    "good/tracemonkey_paper.pdf",
    "good/ibm_redbook_sampled_18p.pdf",
    "good/ca_warn_report_16p.pdf",
    "scanned/lincoln_letter_handwritten.pdf",
]
BOOK = "good/freeculture_book_352p.pdf"


def timed(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    pages = fn()
    return pages / (time.perf_counter() - start)


def docvl(path: Path, settings: Settings, pages: list[int] | None, jpeg: bool = False) -> int:
    doc = load_document(path, settings)
    n = 0
    for rp in iter_rendered(doc, settings, pages):
        if jpeg:
            encode_image(rp.image)
        n += 1
    doc.close()
    return n


def bare_pymupdf(path: Path, targets: list[tuple[int, int]]) -> int:
    with pymupdf.open(path) as pdoc:
        for index, (height, width) in enumerate(targets):
            page = pdoc[index]
            pix = page.get_pixmap(
                matrix=pymupdf.Matrix(width / page.rect.width, height / page.rect.height)
            )
            Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    return len(targets)


def bare_pdf2image(path: Path, target: tuple[int, int], count: int) -> int:
    height, width = target
    images = convert_from_path(
        path, size=(width, height), first_page=1, last_page=count, use_cropbox=True
    )
    return len(images)


def throughput(corpus: Path, pdf2image_pages: int) -> list[list[str]]:
    rows = []
    for rel in DOCS:
        path = corpus / rel
        path.read_bytes()  # page cache
        base = Settings(render_workers=1)
        info = load_document(path, base)
        targets = [page_pixels(p, info.kind, base) for p in info.pages]
        n_pages = info.page_count
        p2i = list(range(1, min(n_pages, pdf2image_pages) + 1))
        ours1 = timed(lambda: docvl(path, base, None))  # noqa: B023
        ours2 = timed(lambda: docvl(path, Settings(render_workers=2), None))  # noqa: B023
        ours_jpeg = timed(lambda: docvl(path, base, None, jpeg=True))  # noqa: B023
        bare = timed(lambda: bare_pymupdf(path, targets))  # noqa: B023
        ours_p2i = timed(lambda: docvl(path, Settings(renderer="pdf2image"), p2i))  # noqa: B023
        bare_p2i = timed(lambda: bare_pdf2image(path, targets[0], len(p2i)))  # noqa: B023
        size = f"{targets[min(5, n_pages - 1)][1]}x{targets[min(5, n_pages - 1)][0]}"
        rows.append(
            [
                Path(rel).name,
                str(n_pages),
                size,
                f"{ours1:.1f}",
                f"{ours2:.1f}",
                f"{ours_jpeg:.1f}",
                f"{bare:.1f}",
                f"{ours1 / bare:.2f}",
                f"{ours_p2i:.1f} ({len(p2i)} p)",
                f"{bare_p2i:.1f}",
                f"{ours1 / ours_p2i:.1f}x",
            ]
        )
        print("  measured", rel, file=sys.stderr)
    return rows


def parallel_threshold(corpus: Path) -> list[list[str]]:
    """Forced parallel rendering of the first k book pages vs one process (first page latency
    incl.)."""
    from pipeline.ingest import render

    path = corpus / BOOK
    doc = load_document(path, Settings())
    rows = []
    saved = render.PARALLEL_MIN_PAGES, render.PARALLEL_MAX_LOAD_PER_CPU
    try:
        for k in (16, 48, 128, 352):
            pages = list(range(1, k + 1))
            render.PARALLEL_MIN_PAGES = 10**9
            one = timed(
                lambda pages=pages: sum(
                    1 for _ in iter_rendered(doc, Settings(render_workers=1), pages)
                )
            )
            render.PARALLEL_MIN_PAGES = 0
            render.PARALLEL_MAX_LOAD_PER_CPU = float("inf")
            two = timed(
                lambda pages=pages: sum(
                    1 for _ in iter_rendered(doc, Settings(render_workers=2), pages)
                )
            )
            rows.append([str(k), f"{one:.1f}", f"{two:.1f}", f"{two / one:.2f}"])
    finally:
        render.PARALLEL_MIN_PAGES, render.PARALLEL_MAX_LOAD_PER_CPU = saved
    return rows


def peak_rss_mib() -> float:
    """VmHWM of this process. ru_maxrss would do, but Linux carries it across fork+exec, so a child
    of a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(corpus: Path, mode: str) -> None:
    settings = Settings(render_workers=1)
    doc = load_document(corpus / BOOK, settings)
    kept = []
    pixels = 0
    if mode != "load":
        for rp in iter_rendered(doc, settings):
            pixels += rp.image.width * rp.image.height
            if mode == "collect":
                kept.append(rp.image)
    peak_mib = peak_rss_mib()
    print(f"{peak_mib:.0f} {len(kept)} {pixels}")


def memory(corpus: Path) -> list[list[str]]:
    rows = []
    for mode in ("load", "stream", "collect"):
        out = subprocess.run(
            [sys.executable, __file__, "--corpus", str(corpus), "--memory-child", mode],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        rows.append([mode, out[0], out[1], f"{int(out[2]) / 1e6:.0f}"])
    return rows


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--pdf2image-pages", type=int, default=100)
    parser.add_argument(
        "--memory-child", choices=["load", "stream", "collect"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.corpus, args.memory_child)
        return
    print(
        f"python {platform.python_version()}, pymupdf {pymupdf.VersionBind}, {platform.machine()}, "
        f"budget {Settings().max_pixels} px/page at {Settings().dpi} dpi, "
        f"PARALLEL_MIN_PAGES={PARALLEL_MIN_PAGES}\n"
    )
    rows = throughput(args.corpus, args.pdf2image_pages)
    print(
        table(
            [
                "document",
                "pages",
                "size (p6)",
                "docvl 1w p/s",
                "docvl 2w p/s",
                "docvl+jpeg p/s",
                "bare pymupdf p/s",
                "docvl/bare",
                "docvl pdf2image p/s",
                "bare pdf2image p/s",
                "pymupdf vs pdf2image",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            ["book pages", "1 process p/s", "2 workers (forced) p/s", "speed-up"],
            parallel_threshold(args.corpus),
        )
    )
    print()
    print(
        table(
            ["352-page book", "peak RSS MiB", "images kept", "megapixels rendered"],
            memory(args.corpus),
        )
    )


if __name__ == "__main__":
    main()
