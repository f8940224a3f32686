"""Crash-safe files: atomic writes, the per-document record store and the JSONL builder.

Every file a flow writes goes through :func:`atomic_write_bytes` (temp file in the same directory,
fsync, ``os.replace``, fsync of the directory). A reader therefore sees the old file or the new one,
never a torn one, even after SIGKILL or power loss. JSONL outputs are never appended to: they are
rebuilt from the per-document records and replaced in one step, so a torn or duplicated line cannot
exist.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from docvl.pipeline.settings import Settings


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it; set back at once (before any thread starts)
    os.umask(mask)
    return mask


#: The process's umask, read once at import: files get ``0o666 & ~umask`` like ``open()`` gives.
UMASK = _read_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~UMASK)  # mkstemp makes 0600 whatever the umask
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _utf8(text: str) -> bytes:
    """UTF-8 of JSON text. A file name that is not valid UTF-8 reaches Python as lone surrogates
    (``surrogateescape``); they are written as JSON ``\\udcXX`` escapes, so the file stays valid
    UTF-8 and JSON, and ``json.loads`` gives back the same ``str`` (``os.fsencode``: the bytes)."""
    return text.encode("utf-8", errors="backslashreplace")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, _utf8(json.dumps(obj, ensure_ascii=False, indent=2) + "\n"))


def atomic_write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    lines = [json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in rows]
    atomic_write_bytes(path, _utf8("".join(line + "\n" for line in lines)))
    return len(lines)


#: Bytes of an input's name kept in an output's name: with the hash, the suffix and the temporary
#: file's decoration (``atomic_write_bytes``) the name stays under the 255-byte limit of most
#: file systems.
MAX_STEM_BYTES = 180


def shown_name(path: str | Path) -> str:
    """A file's name for logs and Prefect names: bytes that are not UTF-8 become ``\\xNN``
    escapes (Prefect cannot serialise the surrogates Python keeps them as)."""
    return os.fsencode(Path(path).name).decode("utf-8", errors="backslashreplace")


def safe_stem(name: str) -> str:
    """A file-name stem made from an untrusted name (an inbox file, a document's own title): one
    printable path component, never hidden, never ``..``, at most :data:`MAX_STEM_BYTES` bytes of
    valid UTF-8 (bytes that are not UTF-8 become U+FFFD)."""
    text = os.fsencode(Path(name).stem if name else "").decode("utf-8", errors="replace")
    text = "".join(c if c.isprintable() and c not in "/\\:" else "_" for c in text)
    text = text.encode()[:MAX_STEM_BYTES].decode("utf-8", errors="ignore").strip(" .")
    return text or "document"


class RecordStore:
    """One JSON file per finished document, ``<root>/<key>.json`` (keys: ``Engine.record_keys``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_settings(cls, settings: Settings) -> RecordStore:
        return cls(Path(settings.cache_dir) / "records")

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON: no record
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, record: Mapping[str, Any]) -> Path:
        target = self.path(key)
        atomic_write_json(target, dict(record))
        return target
