"""Per-document locks, so two ``docvl run`` processes on the same batch never compute the same
document twice (the model cost is paid once).

A lock is ``<cache_dir>/locks/<record key>.lock``, created with ``O_CREAT | O_EXCL`` (exactly one
process gets it) and holding the owner's pid, host and start time. A second run that finds it held
by a live process waits, polling, until the owner's record appears in the record store (it then
reuses that record) or the lock goes away (the owner failed or was killed: it then takes the lock
and computes). A lock whose owner is gone (same host, pid not alive) is stale and is taken over by
renaming it away first (only one renamer wins); so is a lock older than ``stale_after_s`` (another
host's crash). After ``wait_s`` of waiting, a run computes the document anyway (a hung owner must
not stall every other run).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from docvl.flows.delivery import _alive


class DocumentLocks:
    def __init__(
        self, root: Path, wait_s: float = 3600.0, poll_s: float = 0.25, stale_after_s: float = 86400
    ) -> None:
        self.root = root
        self.wait_s, self.poll_s, self.stale_after_s = wait_s, poll_s, stale_after_s

    def path(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    def _stale(self, path: Path) -> bool:
        try:
            info = json.loads(path.read_text())
            age = time.time() - float(info["time"])
            pid, host = int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable: the owner died between create and write, or is writing right now.
            with contextlib.suppress(OSError):
                return time.time() - path.stat().st_mtime > 30
            return False
        if age > self.stale_after_s:
            return True
        return host == socket.gethostname() and not _alive(pid)

    def _try(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not self._stale(path):
                return False
            aside = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.stale")
            try:  # take over: only one process can rename the stale lock away
                os.rename(path, aside)
            except FileNotFoundError:
                return False
            aside.unlink(missing_ok=True)
            return self._try(path)
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, fh)
        return True

    @contextlib.contextmanager
    def hold(self, key: str | None, done: Callable[[], bool]) -> Iterator[bool]:
        """Yield True when this process should compute ``key`` (it holds the lock, or waited
        ``wait_s`` in vain), False when another process finished it meanwhile (``done()``)."""
        if key is None:  # an unreadable file: nothing to share, nothing stored
            yield True
            return
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        deadline = time.monotonic() + self.wait_s
        owned = False
        while not (owned := self._try(path)):
            if done():
                yield False
                return
            if time.monotonic() > deadline:
                break
            time.sleep(self.poll_s)
        try:
            yield True
        finally:
            if owned:
                path.unlink(missing_ok=True)
