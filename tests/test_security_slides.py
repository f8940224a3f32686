"""Document content triggers no network access and no local file read (issue 9).

Crafted decks link pictures and an ``updateAutomatic`` OLE object to ``http://127.0.0.1:PORT``
(a canary listener started here) and to ``file:///`` a local PNG of an unusual solid colour.
Loading and rendering them must send the listener nothing, and no page image may show the colour.
PDFs with URI, Launch and JavaScript actions are checked the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import craftkit as ck
import pymupdf
import pytest
from PIL import Image

from docvl.pipeline.errors import DocvlError
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.render import iter_rendered
from docvl.pipeline.ingest.sandbox import network_sandbox, sandbox_prefix, stage_pptx
from docvl.pipeline.ingest.slides import pptx_slide_texts
from docvl.pipeline.settings import Settings

SETTINGS = Settings()


def shows_canary(image: Image.Image) -> bool:
    """True when some pixels are (close to) CANARY_RGB."""
    colors = image.convert("RGB").getcolors(1 << 24) or []
    r0, g0, b0 = ck.CANARY_RGB
    return any(
        abs(r - r0) < 12 and abs(g - g0) < 12 and abs(b - b0) < 12 for _, (r, g, b) in colors
    )


def canary_png(tmp: Path) -> Path:
    path = tmp / "secret-local.png"
    Image.new("RGB", (64, 64), ck.CANARY_RGB).save(path)
    return path


def assert_contained(doc: LoadedDocument, canary: ck.Canary) -> None:
    images = [r.image for r in iter_rendered(doc, SETTINGS)]
    assert len(images) == doc.page_count
    time.sleep(0.5)  # a late request would still be recorded
    assert canary.requests == [], f"the document reached the network: {canary.requests}"
    assert not any(shows_canary(im) for im in images), "a page shows the linked local file"


def test_canary_detection_works(tmp_path: Path) -> None:
    """The colour check itself: an embedded (not linked) canary picture is seen."""
    assert shows_canary(Image.open(canary_png(tmp_path)))
    assert not shows_canary(Image.new("RGB", (8, 8), (255, 255, 255)))


def test_staging_removes_external_links_but_keeps_hyperlinks(tmp_path: Path) -> None:
    deck = ck.linked_picture_deck(
        tmp_path / "linked.pptx", ["http://127.0.0.1:9/a.png", "file:///etc/passwd"], tmp_path
    )
    staged = tmp_path / "staged.pptx"
    warnings = stage_pptx(deck, staged, SETTINGS)
    assert warnings and "4 external link(s) removed" in warnings[0]
    import zipfile

    with zipfile.ZipFile(staged) as zf:
        rels = b"".join(zf.read(n) for n in zf.namelist() if n.endswith(".rels"))
    assert b"127.0.0.1" not in rels and b"/etc/passwd" not in rels


def test_python_pptx_reads_a_linked_deck_without_fetching(tmp_path: Path) -> None:
    with ck.canary_listener() as canary:
        deck = ck.linked_picture_deck(tmp_path / "l.pptx", [canary.url + "/p.png"], tmp_path)
        warnings: list[str] = []
        texts = pptx_slide_texts(deck, warnings)  # the raw deck, links intact
        time.sleep(0.3)
        assert texts is not None and "Slide 1" in texts[0][0]
        assert canary.requests == []


def test_soffice_runs_without_network_and_under_a_memory_limit() -> None:
    prefix = sandbox_prefix(Settings(slide_memory_mb=1024))
    if shutil.which("prlimit"):
        assert f"--as={1024 * 1024 * 1024}" in prefix
    if network_sandbox():
        out = subprocess.run(
            [*network_sandbox(), "cat", "/proc/net/dev"], capture_output=True, text=True
        )
        interfaces = [ln.split(":")[0].strip() for ln in out.stdout.splitlines()[2:]]
        assert interfaces == ["lo"], "the sandbox has a network interface besides loopback"


@pytest.mark.slow
def test_pptx_links_are_neither_fetched_nor_drawn(tmp_path: Path) -> None:
    local = canary_png(tmp_path)
    with ck.canary_listener() as canary:
        deck = ck.linked_picture_deck(
            tmp_path / "linked.pptx", [canary.url + "/picture.png", local.as_uri()], tmp_path
        )
        with load_document(deck, SETTINGS) as doc:
            assert doc.page_count == 2
            assert any("external link(s) removed" in w for w in doc.warnings)
            assert_contained(doc, canary)


@pytest.mark.slow
def test_legacy_ppt_links_are_neither_fetched_nor_drawn(tmp_path: Path) -> None:
    """The .ppt is made here by LibreOffice from a linked deck (with a throwaway profile); that
    conversion may touch the canary, so its requests are cleared before docvl loads the .ppt."""
    local = canary_png(tmp_path)
    with ck.canary_listener() as canary:
        deck = ck.linked_picture_deck(
            tmp_path / "linked.pptx", [canary.url + "/picture.png", local.as_uri()], tmp_path
        )
        subprocess.run(
            [
                "soffice",
                f"-env:UserInstallation={(tmp_path / 'craft-profile').as_uri()}",
                "--headless",
                "--convert-to",
                "ppt",
                "--outdir",
                str(tmp_path / "ppt"),
                str(deck),
            ],
            capture_output=True,
            timeout=180,
            check=True,
        )
        ppt = tmp_path / "ppt" / "linked.ppt"
        data = ppt.read_bytes()
        assert "http://127.0.0.1".encode("utf-16-le") in data, "no http link to test"
        # the file:/// link survives as a path relative to the .ppt ("../secret-local.png")
        assert local.name.encode("utf-16-le") in data, "no local-file link to test"
        time.sleep(0.5)
        canary.requests.clear()
        with load_document(ppt, SETTINGS) as doc:
            assert_contained(doc, canary)


def test_pdf_actions_and_javascript_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "launched"
    script = tmp_path / "launch.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    with ck.canary_listener() as canary:
        doc = pymupdf.open()  # type: ignore[no-untyped-call]
        page = doc.new_page()  # type: ignore[no-untyped-call]
        page.insert_text((72, 72), "Actions")  # type: ignore[no-untyped-call]
        page.insert_link(  # type: ignore[no-untyped-call]
            {"kind": pymupdf.LINK_URI, "from": pymupdf.Rect(0, 0, 300, 300), "uri": canary.url}
        )
        page.insert_link(  # type: ignore[no-untyped-call]
            {
                "kind": pymupdf.LINK_LAUNCH,
                "from": pymupdf.Rect(0, 300, 300, 600),
                "file": str(script),
            }
        )
        js = doc.get_new_xref()  # type: ignore[no-untyped-call]
        doc.update_object(  # type: ignore[no-untyped-call]
            js, f'<</S/JavaScript/JS(app.launchURL\\("{canary.url}/js"\\);)>>'
        )
        catalog = doc.pdf_catalog()  # type: ignore[no-untyped-call]
        doc.xref_set_key(catalog, "OpenAction", f"{js} 0 R")  # type: ignore[no-untyped-call]
        uri = doc.get_new_xref()  # type: ignore[no-untyped-call]
        doc.update_object(uri, f"<</S/URI/URI({canary.url}/open)>>")  # type: ignore[no-untyped-call]
        doc.xref_set_key(page.xref, "AA", f"<</O {uri} 0 R>>")  # type: ignore[no-untyped-call]
        path = tmp_path / "actions.pdf"
        doc.save(path)  # type: ignore[no-untyped-call]
        doc.close()  # type: ignore[no-untyped-call]
        with load_document(path, SETTINGS) as loaded:
            assert_contained(loaded, canary)
    assert not marker.exists(), "a Launch action ran"


def test_corpus_javascript_pdf_loads_without_running_it(corpus: Path) -> None:
    with load_document(corpus / "bad" / "javascript_document_actions.pdf", SETTINGS) as doc:
        assert doc.page_count == 3
        assert all(r.image.size for r in iter_rendered(doc, SETTINGS))


# --- budgets on decks -----------------------------------------------------------------------------


def test_zip_bomb_deck_is_refused_before_conversion(tmp_path: Path) -> None:
    deck = ck.zip_bomb_deck(tmp_path / "bomb.pptx", unpacked_mb=64)
    assert deck.stat().st_size < 1_000_000
    start = time.monotonic()
    with pytest.raises(DocvlError) as info:
        load_document(deck, Settings(max_unpacked_bytes=32 * 1024 * 1024))
    assert info.value.code == "package_too_large"
    assert time.monotonic() - start < 60


def test_deck_picture_pixel_bomb_is_refused(tmp_path: Path) -> None:
    stub = tmp_path / "stub.png"
    Image.new("RGB", (8, 8)).save(stub)
    deck = ck.deck(tmp_path / "pixels.pptx", picture=stub)  # python-pptx refuses the bomb itself
    bomb = ck.png_declaring(tmp_path / "bomb.png", 50_000, 50_000)
    ck.rewrite_zip(deck, {"ppt/media/image1.png": bomb.read_bytes()})
    with pytest.raises(DocvlError) as info:
        load_document(deck, SETTINGS)
    assert info.value.code == "too_many_pixels"


def test_deck_slide_cap(tmp_path: Path) -> None:
    deck = ck.deck(tmp_path / "many.pptx", slides=5)
    with pytest.raises(DocvlError) as info:
        load_document(deck, Settings(max_pages=4))
    assert info.value.code == "too_many_pages"


@pytest.mark.slow
def test_libreoffice_time_and_memory_limits(tmp_path: Path, corpus: Path) -> None:
    deck = corpus / "slides" / "how_we_refactor_28s.pptx"
    # At its address-space limit LibreOffice crashes or, as often, exits 0 with "source file could
    # not be loaded" (CI met that at 256 MiB; here it happened at 320 and 640 MiB): both are
    # conversion_memory. 512 MiB stays well under this deck's unlimited peak (671-735 MiB).
    for settings, code in (
        (Settings(slide_timeout_s=0.5), "conversion_timeout"),
        (Settings(slide_memory_mb=256), "conversion_memory"),
        (Settings(slide_memory_mb=512), "conversion_memory"),
    ):
        with pytest.raises(DocvlError) as info:
            load_document(deck, settings)
        assert info.value.code == code, info.value.message
