"""Command-line inputs: files, directories (searched recursively) and glob patterns."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from docvl.pipeline.errors import UsageError

#: The names a directory is searched for. Loading still decides by content (never by name): an
#: explicit file of any name is analysed, or gets its typed error record.
SUPPORTED_SUFFIXES = frozenset(
    {".pdf", ".pptx", ".pptm", ".ppsx", ".potx", ".ppt", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
    | {".webp"}
)
GLOB_CHARS = frozenset("*?[")


def _in_directory(directory: Path) -> list[Path]:
    found = [
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    return sorted(found)


def expand_inputs(args: Sequence[str | Path]) -> list[Path]:
    """Every input as files, in the order given: a directory becomes its supported files (sorted,
    recursively, hidden ones skipped), a pattern with ``* ? [`` its sorted matches (``**``
    recursive). Any other path is kept as given, so a missing file gets its own error record.

    Raises UsageError for a pattern or directory that yields no document.
    """
    paths: list[Path] = []
    for arg in args:
        text = str(arg)
        path = Path(text)
        if path.is_dir():
            found = _in_directory(path)
            if not found:
                kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
                raise UsageError(f"directory {text} holds no document ({kinds})")
            paths.extend(found)
        elif not path.exists() and GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise UsageError(f"no file matches {text!r}")
            paths.extend(files)
        else:
            paths.append(path)
    return paths
