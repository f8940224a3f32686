"""Crafted hostile inputs for the ingest hardening tests (issue 9), generated at test time: pixel
bombs, many-page PDFs, zip-bomb and linked-content decks, and a canary HTTP listener."""

from __future__ import annotations

import io
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pymupdf
from PIL import Image
from pptx import Presentation
from pptx.util import Inches

#: An unusual solid colour: a linked local picture of it must never show in a rendered page.
CANARY_RGB = (13, 251, 97)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header declares ``width`` x ``height`` (IDAT holds one row only): the
    decoder would allocate the full image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\xff" * (3 * min(width, 4096)))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny real JPEG whose SOF0 frame header is patched to declare ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def tiff_frames(path: Path, frames: int, size: tuple[int, int] = (8, 8)) -> Path:
    first, *rest = [Image.new("L", size, i % 256) for i in range(frames)]
    first.save(path, format="TIFF", save_all=True, append_images=rest)
    return path


def blank_pdf(path: Path, pages: int) -> Path:
    """A PDF of ``pages`` blank letter pages, written directly (PyMuPDF's ``new_page`` takes
    minutes for 10,000 pages on a busy machine); a valid cross-reference table."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>"]
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(pages))
    objects.append(b"<</Type/Pages/Count %d/Kids[%s]>>" % (pages, kids))
    objects += [b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>"] * pages
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def pdf_with_count(path: Path, count: int) -> Path:
    """A one-page PDF whose page tree root declares ``/Count count``."""
    blank_pdf(path, 1)
    data = path.read_bytes().replace(b"/Count 1", b"/Count " + str(count).encode(), 1)
    path.write_bytes(data)
    return path


def pdf_with_big_image(path: Path, width: int, height: int) -> Path:
    """A one-page PDF drawing an image XObject that declares ``width`` x ``height`` pixels (its
    stream holds much less: MuPDF would decode the declared size)."""
    small = pymupdf.open()  # type: ignore[no-untyped-call]
    page = small.new_page()  # type: ignore[no-untyped-call]
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 4, 4), False)
    page.insert_image(page.rect, pixmap=pix)  # type: ignore[no-untyped-call]
    xref = page.get_images()[0][0]  # type: ignore[no-untyped-call]
    small.xref_set_key(xref, "Width", str(width))  # type: ignore[no-untyped-call]
    small.xref_set_key(xref, "Height", str(height))  # type: ignore[no-untyped-call]
    small.save(path)  # type: ignore[no-untyped-call]
    small.close()  # type: ignore[no-untyped-call]
    return path


def deck(path: Path, slides: int = 1, picture: Path | None = None) -> Path:
    prs = Presentation()
    for i in range(slides):
        slide = prs.slides.add_slide(prs.slide_layouts[5])
        slide.shapes.title.text = f"Slide {i + 1}"  # type: ignore[union-attr]
        if picture is not None:
            slide.shapes.add_picture(str(picture), Inches(1), Inches(1.5), Inches(8), Inches(5))
    prs.save(str(path))
    return path


def rewrite_zip(path: Path, edits: dict[str, bytes]) -> None:
    """Replace (or add) members of a zip in place."""
    with zipfile.ZipFile(path) as zf:
        items = [(i, zf.read(i.filename)) for i in zf.infolist()]
    names = {i.filename for i, _ in items}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in items:
            zf.writestr(info, edits.get(info.filename, data))
        for name, data in edits.items():
            if name not in names:
                zf.writestr(name, data)


def linked_picture_deck(path: Path, targets: list[str], tmp: Path) -> Path:
    """A deck with one slide per target: a picture whose blip is *linked* (``r:link``, relationship
    ``TargetMode="External"``) to ``target`` (``http://...`` or ``file:///...``), plus one linked
    OLE object marked ``updateAutomatic`` on the first slide."""
    stub = tmp / "stub.png"
    Image.new("RGB", (8, 8), (255, 255, 255)).save(stub)
    deck(path, slides=len(targets), picture=stub)
    edits: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as zf:
        for n, target in enumerate(targets, 1):
            rels_name = f"ppt/slides/_rels/slide{n}.xml.rels"
            rels = zf.read(rels_name).decode()
            slide = zf.read(f"ppt/slides/slide{n}.xml").decode()
            rels = rels.replace(
                "</Relationships>",
                '<Relationship Id="rIdLink" Type="http://schemas.openxmlformats.org/'
                f'officeDocument/2006/relationships/image" Target="{target}" '
                'TargetMode="External"/>'
                '<Relationship Id="rIdOle" Type="http://schemas.openxmlformats.org/'
                f'officeDocument/2006/relationships/oleObject" Target="{target}.xlsx" '
                'TargetMode="External"/></Relationships>',
            )
            slide = slide.replace('r:embed="rId2"', 'r:link="rIdLink"')
            edits[rels_name] = rels.encode()
            edits[f"ppt/slides/slide{n}.xml"] = slide.encode()
        slide1 = edits["ppt/slides/slide1.xml"].decode()
        ole = (
            '<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="90" name="Linked sheet"/>'
            "<p:cNvGraphicFramePr/><p:nvPr/></p:nvGraphicFramePr>"
            '<p:xfrm><a:off x="0" y="0"/><a:ext cx="914400" cy="914400"/></p:xfrm>'
            '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/presentationml/'
            '2006/ole"><p:oleObj name="Sheet" r:id="rIdOle" progId="Excel.Sheet.12">'
            '<p:link updateAutomatic="1"/></p:oleObj></a:graphicData></a:graphic>'
            "</p:graphicFrame></p:spTree>"
        )
        edits["ppt/slides/slide1.xml"] = slide1.replace("</p:spTree>", ole, 1).encode()
    rewrite_zip(path, edits)
    return path


def zip_bomb_deck(path: Path, unpacked_mb: int) -> Path:
    """A valid deck plus one part of ``unpacked_mb`` MiB of zeros (deflates ~1000:1)."""
    deck(path)
    block = b"\x00" * (1 << 20)
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf,
        zf.open("ppt/media/bomb.bin", "w", force_zip64=True) as fh,
    ):
        for _ in range(unpacked_mb):
            fh.write(block)
    return path


class Canary:
    """A local HTTP listener recording every request path it sees."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            do_HEAD = do_GET
            do_POST = do_GET
            do_PROPFIND = do_GET
            do_OPTIONS = do_GET

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def canary_listener() -> Iterator[Canary]:
    canary = Canary()
    thread = threading.Thread(target=canary.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield canary
    finally:
        canary.server.shutdown()
        canary.server.server_close()
