"""Units of work and their record keys, importable without the engine's heavy stages.

A :class:`Unit` is the input files analysed together: one document, or every document of a
cross-document question (``settings.share_windows`` with the ``ask`` task). The same content under
two names is one unit (:func:`make_units`), and :func:`expand` gives each input path its envelope.
:func:`record_keys` names where a unit's final records are stored.

This module needs only hashing, the settings, the task specs and the result model: no document
loader (PyMuPDF), no model backend, no Prefect. ``docvl run`` uses it to answer a rerun of finished
documents from the record store without importing anything heavier (:mod:`docvl.flows.rerun`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from docvl.pipeline.engine.identity import cache_key
from docvl.pipeline.result import ResultEnvelope
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import TaskSpec

CHUNK = 1 << 20


def sha256_file(path: Path) -> str | None:
    """The file's content hash, or None when it cannot be read (loading then says why)."""
    digest = hashlib.sha256()
    try:
        if not path.is_file():  # opening a FIFO blocks forever; loading says what it is
            return None
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


@dataclass(frozen=True)
class Unit:
    """Input files analysed together, with their content hashes (None: unreadable)."""

    paths: tuple[Path, ...]
    shas: tuple[str | None, ...]


def shares_windows(settings: Settings, specs: Sequence[TaskSpec], n_paths: int) -> bool:
    """A question across documents: their pages share windows for the ``ask`` task."""
    return settings.share_windows and n_paths > 1 and any(s.name == "ask" for s in specs)


def make_units(
    paths: Sequence[Path], settings: Settings, specs: Sequence[TaskSpec]
) -> tuple[list[Unit], list[int]]:
    """The units of a batch, and for each input path the unit that holds it.

    Without shared windows each distinct content is one unit, analysed once: a second path with the
    same bytes gets a copy of its record. Unreadable files are units of their own.
    """
    shas = [sha256_file(Path(p)) for p in paths]
    if shares_windows(settings, specs, len(paths)):
        return [Unit(tuple(Path(p) for p in paths), tuple(shas))], [0] * len(paths)
    units: list[Unit] = []
    owner: dict[str, int] = {}
    of_path: list[int] = []
    for path, sha in zip(paths, shas, strict=True):
        if sha is not None and sha in owner:
            of_path.append(owner[sha])
            continue
        if sha is not None:
            owner[sha] = len(units)
        of_path.append(len(units))
        units.append(Unit((Path(path),), (sha,)))
    return units, of_path


def record_keys(unit: Unit, settings: Settings, specs: Sequence[TaskSpec]) -> list[str | None]:
    """Per file of the unit, the key of its record (None: unreadable, never stored)."""
    if any(sha is None for sha in unit.shas):
        return [None] * len(unit.paths)
    if len(unit.paths) == 1:
        return [cache_key("record", unit.shas, settings, specs)]
    return [cache_key("record", unit.shas, settings, specs, i) for i in range(len(unit.paths))]


def expand(
    units: Sequence[Unit],
    of_path: Sequence[int],
    done: Sequence[Sequence[ResultEnvelope]],
    paths: Sequence[str | Path],
) -> list[ResultEnvelope]:
    """Per input path, its envelope: a copy under its own path when its content was a duplicate."""
    out: list[ResultEnvelope] = []
    for path, u in zip(paths, of_path, strict=True):
        unit = units[u]
        envelope = done[u][unit.paths.index(Path(path))] if Path(path) in unit.paths else done[u][0]
        if envelope.source.path != str(path):
            envelope = envelope.model_copy(deep=True)
            envelope.source.path = str(path)
        out.append(envelope)
    return out
