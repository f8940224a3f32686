"""Progress events from flow tasks, and a Rich progress bar (documents, pages, windows) driven by
them.

Tasks call :func:`emit` (a no-op without listeners, e.g. in served runs). Listeners are process-wide
because tasks run in worker threads; :func:`listening` registers one for the duration of a block.

Events (``kind``, fields):

* ``started``: ``path`` (the runner starts loading a document)
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


def _name(path: Any) -> str:
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    return name if len(name) <= 40 else name[:37] + "..."


@contextlib.contextmanager
def progress_bar(
    total_documents: int, *, console: Any | None = None, enabled: bool = True
) -> Iterator[None]:
    """Show documents / pages / windows bars on stderr while the block runs (for ``docvl run``),
    and one row per document in flight with its name and stage (loading, then its windows)."""
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
    rows: dict[str, Any] = {}  # documents in flight: path -> their row
    lock = threading.Lock()

    def grow(task_id: Any, amount: int) -> None:
        task = progress.tasks[task_id]
        progress.update(task_id, total=(task.total or 0) + amount)

    def row(path: Any, stage: str, **update: Any) -> None:
        key = str(path)
        if key not in rows:
            rows[key] = progress.add_task("", total=None)
        progress.update(rows[key], description=f"{_name(key)} · {stage}", **update)

    def on_event(kind: str, f: dict[str, Any]) -> None:
        with lock:
            if kind == "started":
                row(f.get("path"), "loading")
            elif kind == "planned":
                grow(pages, int(f.get("pages", 0)))
                grow(windows, int(f.get("windows", 0)))
                row(f.get("path"), "windows", total=int(f.get("windows", 0)), completed=0)
            elif kind == "window":
                progress.advance(pages, int(f.get("pages", 0)))
                progress.advance(windows, 1)
                if str(f.get("path")) in rows:
                    progress.advance(rows[str(f.get("path"))], 1)
            elif kind == "document":
                owed_pages, owed_windows = int(f.get("pages", 0)), int(f.get("windows", 0))
                if owed_pages:
                    grow(pages, owed_pages)
                    progress.advance(pages, owed_pages)
                if owed_windows:
                    grow(windows, owed_windows)
                    progress.advance(windows, owed_windows)
                progress.advance(docs, 1)
                if (task_id := rows.pop(str(f.get("path")), None)) is not None:
                    progress.remove_task(task_id)

    with progress, listening(on_event):
        yield
