"""Progress events from flow tasks, and a Rich progress bar (documents, pages, windows) driven by
them.

Tasks call :func:`emit` (a no-op without listeners, e.g. in served runs). Listeners are process-wide
because tasks run in worker threads; :func:`listening` registers one for the duration of a block.

Events (``kind``, fields):

* ``planned``: ``path``, ``pages``, ``windows`` (a document was loaded and planned)
* ``window``: ``path``, ``pages`` (a window finished; ``pages`` it covered)
* ``document``: ``path``, ``status``, ``pages``, ``windows``, ``cached`` (a document finished or was
  skipped because its record exists; ``pages``/``windows`` are what it still owes to the bars)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

Listener = Callable[[str, dict[str, Any]], None]

_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(kind: str, **fields: Any) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(kind, fields)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    with _lock:
        _listeners.append(listener)
    try:
        yield listener
    finally:
        with _lock:
            _listeners.remove(listener)


@contextlib.contextmanager
def progress_bar(
    total_documents: int, *, console: Any | None = None, enabled: bool = True
) -> Iterator[None]:
    """Show documents / pages / windows bars on stderr while the block runs (for ``docvl run``)."""
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    docs = progress.add_task("documents", total=total_documents)
    pages = progress.add_task("pages", total=0)
    windows = progress.add_task("windows", total=0)
    lock = threading.Lock()

    def grow(task_id: Any, amount: int) -> None:
        task = progress.tasks[task_id]
        progress.update(task_id, total=(task.total or 0) + amount)

    def on_event(kind: str, f: dict[str, Any]) -> None:
        with lock:
            if kind == "planned":
                grow(pages, int(f.get("pages", 0)))
                grow(windows, int(f.get("windows", 0)))
            elif kind == "window":
                progress.advance(pages, int(f.get("pages", 0)))
                progress.advance(windows, 1)
            elif kind == "document":
                owed_pages, owed_windows = int(f.get("pages", 0)), int(f.get("windows", 0))
                if owed_pages:
                    grow(pages, owed_pages)
                    progress.advance(pages, owed_pages)
                if owed_windows:
                    grow(windows, owed_windows)
                    progress.advance(windows, owed_windows)
                progress.advance(docs, 1)

    with progress, listening(on_event):
        yield
