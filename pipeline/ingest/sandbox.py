"""Slide conversion that cannot reach outside the deck, within budgets (issue 9).

A deck's content must trigger no network access and no local file read. Three layers:

* **Links are broken before anything reads the deck** (:func:`stage_pptx`): the .pptx is copied
  into the document's workdir with every ``TargetMode="External"`` relationship removed except
  hyperlinks (which nothing follows): linked pictures (``r:link``), linked OLE objects
  (``updateAutomatic``), external templates, audio and video. python-pptx and LibreOffice both read
  that copy. The copy counts the bytes it unpacks, so a zip bomb stops at
  ``Settings.unpacked_cap()`` (``package_too_large``); every picture's declared size is checked
  against ``Settings.page_pixel_cap()`` (``max_page_pixels`` within the memory budget,
  ``too_many_pixels``) and the slide count against
  ``Settings.max_pages`` (``too_many_pages``).
* **A locked profile** (:func:`write_profile`): a fresh one per conversion with macros never run
  (``MacroSecurityLevel`` 3, ``DisableMacrosExecution``) and ``BlockUntrustedRefererLinks`` on:
  LibreOffice loads no linked graphic of an untrusted document. This covers legacy .ppt, whose
  binary links are not rewritten.
* **No network** (:func:`sandbox_prefix`): soffice runs under ``unshare -rn`` (a new user and
  network namespace with only a down loopback) where the kernel allows it, and under
  ``prlimit --as`` always: ``Settings.slide_memory_limit_mb()``, i.e. ``slide_memory_mb`` but never
  more than the run's ``memory_budget_mb`` (whose guard, :mod:`docvl.flows.memory`, also counts
  LibreOffice's resident memory and kills it when the run goes over).

:func:`run_in_group` runs the command in its own process group, kills the group past its time
limit, and samples the address-space high-water mark (``VmPeak``) of every process in it. At its
``--as`` limit LibreOffice either crashes (a signal, ``std::bad_alloc``) or, just as often, reports
"source file could not be loaded" and exits 0; the peak tells that second case from a deck it
cannot read. Measured with a 28-slide corpus deck: unlimited, soffice.bin peaks at 671-735 MiB;
at a 640 MiB limit it exits 0 with that message, its peak 640 MiB, in 3 runs of 3.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import signal
import subprocess
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import psutil
from lxml import etree
from PIL import Image

from docvl.pipeline.errors import CorruptDocument, PackageTooLarge, TooManyPages, TooManyPixels
from docvl.pipeline.settings import Settings

RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
HYPERLINK_TYPE = "/hyperlink"
_SLIDE_PREFIX = "ppt/slides/slide"

PROFILE_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
{items}
</oor:items>
"""
_LOCKS = {
    "/org.openoffice.Office.Common/Security/Scripting": {
        "MacroSecurityLevel": "3",
        "DisableMacrosExecution": "true",
        "BlockUntrustedRefererLinks": "true",
    },
    "/org.openoffice.Office.Common/Misc": {"UseOpenCL": "false"},
}


def write_profile(profile: Path) -> None:
    """A fresh LibreOffice user profile with macros and linked content locked off."""
    items = [
        f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse">'
        f"<value>{value}</value></prop></item>"
        for path, props in _LOCKS.items()
        for name, value in props.items()
    ]
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(PROFILE_XCU.format(items="\n".join(items)))


@functools.cache
def network_sandbox() -> tuple[str, ...]:
    """``("unshare", "-rn")`` when this kernel lets an unprivileged process make a network
    namespace, else ``()`` (links are still broken and the profile still blocks them)."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return ()
    return (exe, "-rn") if ok else ()


def address_space_limited() -> bool:
    """Whether :func:`sandbox_prefix` limits the address space (``prlimit`` is on PATH)."""
    return shutil.which("prlimit") is not None


def sandbox_prefix(settings: Settings) -> list[str]:
    """What the soffice command runs under: an address-space limit and no network."""
    prefix: list[str] = []
    prlimit = shutil.which("prlimit")
    if prlimit is not None:
        prefix += [prlimit, f"--as={settings.slide_memory_limit_mb() * 1024 * 1024}"]
    return prefix + list(network_sandbox())


#: How often :func:`run_in_group` samples the address-space peak of the group's processes.
SAMPLE_S = 0.05


@dataclass(frozen=True)
class GroupExit:
    """How a command run by :func:`run_in_group` ended."""

    returncode: int
    output: bytes
    #: The largest address-space peak (``VmPeak``) any of its processes reached, in MiB.
    peak_mb: int


def run_in_group(cmd: list[str], timeout_s: float) -> GroupExit:
    """Run ``cmd`` in a new process group, stdout and stderr together, sampling every process of
    the group for its address-space peak each :data:`SAMPLE_S`. Past ``timeout_s`` the group is
    killed and :class:`subprocess.TimeoutExpired` raised; an exception in the caller's thread
    kills it too. Nothing the command started outlives it. ``OSError``: it could not start."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    peak = 0
    try:
        while True:
            try:
                output, _ = proc.communicate(timeout=min(SAMPLE_S, timeout_s))
                break
            except subprocess.TimeoutExpired:
                peak = max(peak, _group_peak_mb(proc.pid))
                if time.monotonic() >= deadline:
                    raise
    except BaseException:
        _kill_group(proc)
        raise
    _kill_group(proc)
    return GroupExit(proc.returncode, output or b"", peak)


def _group_peak_mb(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    peak = 0
    for proc in procs:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmPeak:"):
                    peak = max(peak, int(line.split()[1]) // 1024)
    return peak


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.communicate(timeout=10)


def stage_pptx(src: Path, dst: Path, settings: Settings) -> list[str]:
    """Copy the deck ``src`` to ``dst`` without external links, within the budgets. Returns
    warnings (how many links were removed)."""
    removed = 0
    budget = settings.unpacked_cap()
    try:
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
            infos = zin.infolist()
            slides = [i for i in infos if _is_slide(i.filename)]
            if len(slides) > settings.max_pages:
                raise TooManyPages(
                    f"{src.name}: {len(slides)} slides, over the cap of {settings.max_pages} "
                    "(DOCVL_MAX_PAGES)"
                )
            declared = sum(i.file_size for i in infos)
            if declared > budget:  # headers can lie: the copy counts too
                raise PackageTooLarge(_too_large(src, declared, budget))
            for info in infos:
                if not info.filename.endswith(".rels"):
                    budget -= _copy_capped(zin, zout, info, budget, src.name, settings)
                    continue
                data = _read_capped(zin, info, budget)
                budget -= len(data)
                data, n = _drop_external(data, info.filename, src.name)
                removed += n
                zout.writestr(info, data)
    except (PackageTooLarge, TooManyPages, TooManyPixels, CorruptDocument):
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        raise CorruptDocument(
            f"{src.name}: the PowerPoint package is damaged ({type(exc).__name__}: {exc})"
        ) from exc
    if removed:
        return [f"{removed} external link(s) removed (linked pictures/objects are not fetched)"]
    return []


def _is_slide(name: str) -> bool:
    return name.startswith(_SLIDE_PREFIX) and name.endswith(".xml") and "/_rels/" not in name


def _too_large(src: Path, size: int, budget: int) -> str:
    return (
        f"{src.name}: the package unpacks to more than {budget:,} bytes ({size:,} at least; "
        "a zip bomb?) (DOCVL_MAX_UNPACKED_BYTES)"
    )


def _copy_capped(
    zin: zipfile.ZipFile,
    zout: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: int,
    name: str,
    settings: Settings,
) -> int:
    """Stream one member from ``zin`` to ``zout`` a block at a time (a large part never sits in
    memory), stopping once more than ``budget`` bytes came out; a picture's declared size is checked
    on its first block. Returns the bytes copied."""
    total = 0
    big = budget > zipfile.ZIP64_LIMIT
    with zin.open(info) as fh, zout.open(info, "w", force_zip64=big) as out:
        while block := fh.read(1 << 20):
            if total == 0 and info.filename.startswith("ppt/media/"):
                _check_picture(block, info.filename, name, settings.page_pixel_cap())
            total += len(block)
            if total > budget:
                raise PackageTooLarge(
                    f"{info.filename}: the package unpacks to more than the remaining budget "
                    f"(a zip bomb?) (DOCVL_MAX_UNPACKED_BYTES)"
                )
            out.write(block)
    return total


def _read_capped(zin: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """A member's bytes, stopping once more than ``budget`` came out (headers can lie)."""
    chunks: list[bytes] = []
    total = 0
    with zin.open(info) as fh:
        while block := fh.read(1 << 20):
            total += len(block)
            if total > budget:
                raise PackageTooLarge(
                    f"{info.filename}: the package unpacks to more than the remaining budget "
                    f"(a zip bomb?) (DOCVL_MAX_UNPACKED_BYTES)"
                )
            chunks.append(block)
    return b"".join(chunks)


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def _drop_external(data: bytes, part: str, name: str) -> tuple[bytes, int]:
    """Remove external relationships other than hyperlinks from one ``.rels`` part."""
    if b"External" not in data:
        return data, 0
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise CorruptDocument(f"{name}: {part} is not well-formed XML ({exc})") from exc
    removed = 0
    for rel in list(root):
        mode = rel.get("TargetMode", "")
        if mode.lower() == "external" and not rel.get("Type", "").endswith(HYPERLINK_TYPE):
            root.remove(rel)
            removed += 1
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return out, removed


def _check_picture(data: bytes, part: str, name: str, max_pixels: int) -> None:
    """Refuse a picture declaring more than ``max_pixels`` (reads its header only)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name}: picture {part}: {exc} (DOCVL_MAX_PAGE_PIXELS)") from exc
    except Exception:  # not an image PIL knows (EMF, SVG, media): LibreOffice decides
        return
    if width * height > max_pixels:
        raise TooManyPixels(
            f"{name}: picture {part} declares {width}x{height} pixels, over the cap of "
            f"{max_pixels:,} (DOCVL_MAX_PAGE_PIXELS)"
        )
