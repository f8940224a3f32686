"""The sandboxed process runner and how a failed conversion is classified, with stand-in
``soffice`` executables: fast, no LibreOffice needed (the real one at its limit is in
``test_security_slides.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from docvl.pipeline.errors import ConversionFailed, ConversionOutOfMemory
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.sandbox import address_space_limited, run_in_group
from docvl.pipeline.settings import Settings

#: What LibreOffice prints, exiting 0, when a deck's import fails: a deck it cannot read, or
#: an allocation refused at its address-space limit inside the import filter.
NOT_LOADED = 'print("Error: source file could not be loaded"); raise SystemExit(0)'
#: Allocates until the address-space limit refuses it, then fails like LibreOffice does there,
#: after a pause standing for LibreOffice's shutdown (hundreds of ms), during which the runner's
#: sampling sees the peak.
AT_LIMIT = f"""
import time
chunks = []
try:
    while True:
        chunks.append(bytearray(8 << 20))
except MemoryError:
    chunks.clear()
time.sleep(0.5)
{NOT_LOADED}
"""


def _fake_soffice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "soffice"
    exe.write_text(f"#!{sys.executable}\n{body}\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_peak_is_the_largest_address_space_of_the_group() -> None:
    # The 160 MiB are held by a grandchild: the whole group is sampled, not only the child.
    code = "b = bytearray(160 << 20); import time; time.sleep(0.5)"
    script = f"{sys.executable} -c '{code}'; echo done"
    done = run_in_group(["sh", "-c", script], timeout_s=30)
    assert done.returncode == 0 and done.output == b"done\n"
    assert 160 <= done.peak_mb < 400


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_group(["sh", "-c", script], timeout_s=3)
    assert time.monotonic() - started < 20
    grandchild = int(pid_file.read_text())  # written within the 3 s, even on a loaded machine
    # SIGKILL takes effect when the kernel next schedules the process: moments, not at once.
    deadline = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_load_failure_at_the_limit_is_out_of_memory(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert address_space_limited()  # util-linux's prlimit: CI installs it
    _fake_soffice(tmp_path, monkeypatch, AT_LIMIT)
    with pytest.raises(ConversionOutOfMemory, match=r"reached \d+ of 256 MiB"):
        load_document(samples / "deck.pptx", Settings(slide_memory_mb=256))


def test_load_failure_below_the_limit_is_a_failed_conversion(
    samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_soffice(tmp_path, monkeypatch, NOT_LOADED)
    with pytest.raises(ConversionFailed, match="source file could not be loaded") as info:
        load_document(samples / "deck.pptx", Settings(slide_memory_mb=256))
    assert info.value.code == "conversion_failed"
