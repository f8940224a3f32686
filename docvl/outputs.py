"""What ``docvl run`` writes besides the JSONL: an output directory with one file per document and
format, and the closing summary on stderr."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docvl.flows.report import document_markdown
from docvl.flows.store import atomic_write_bytes, atomic_write_json
from docvl.pipeline.errors import UsageError
from docvl.pipeline.result import ResultEnvelope

FORMATS = ("json", "md")


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"json,md"`` -> ``("json", "md")``; a UsageError for anything else."""
    formats = tuple(dict.fromkeys(f.strip().lower() for f in spec.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"--to wants a comma-separated list of {', '.join(FORMATS)}, got {spec!r}")
    return formats


def check_output_file(out: Path | None) -> None:
    """Refuse, before any work, an output file that cannot be written as one."""
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name (or --output-dir DIR)")


def check_output_dir(directory: Path | None) -> None:
    if directory is not None and directory.exists() and not directory.is_dir():
        raise UsageError(f"--output-dir {directory} exists and is not a directory")


def document_stem(env: ResultEnvelope) -> str:
    """``<stem>.<sha12>``: the file name without its suffix, then the content hash (for a file that
    could not be read, the hash of its path), so equal names from different folders never
    collide."""
    name = env.source.path.replace("\\", "/").rsplit("/", 1)[-1]
    stem = re.sub(r"[^\w.-]+", "_", name.rsplit(".", 1)[0] if "." in name else name) or "document"
    sha = env.source.sha256 or hashlib.sha256(env.source.path.encode()).hexdigest()
    return f"{stem}.{sha[:12]}"


def write_output_dir(
    directory: Path, envelopes: Sequence[ResultEnvelope], formats: Sequence[str]
) -> list[Path]:
    """One ``<stem>.<sha12>.<format>`` per document and format (written atomically)."""
    written: list[Path] = []
    for env in envelopes:
        stem = document_stem(env)
        if "json" in formats:
            target = directory / f"{stem}.json"
            atomic_write_json(target, env.model_dump(mode="json"))
            written.append(target)
        if "md" in formats:
            target = directory / f"{stem}.md"
            atomic_write_bytes(target, (document_markdown(env) + "\n").encode())
            written.append(target)
    return written


def summary_lines(
    envelopes: Sequence[ResultEnvelope], cached: int, outputs: Sequence[str]
) -> list[str]:
    """The closing summary: counts, each failure's code and message, outputs, tokens and cost."""
    counts = {"ok": 0, "failed": 0}
    for env in envelopes:
        counts[env.status] = counts.get(env.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in counts.items())
    lines = [f"docvl: {len(envelopes)} documents: {tally}, {cached} cached"]
    for env in envelopes:
        if env.status == "ok":
            continue
        for err in env.errors or []:
            page = f" (page {err.page})" if err.page else ""
            lines.append(f"  {env.status} {env.source.path}: [{err.code}]{page} {err.message}")
        if not env.errors:
            lines.append(f"  {env.status} {env.source.path}")
    usage: dict[str, Any] = {"in": 0, "out": 0, "cost": 0.0}
    for env in envelopes:
        usage["in"] += env.usage.input_tokens
        usage["out"] += env.usage.output_tokens
        usage["cost"] += env.usage.cost_usd
    lines.append(f"  tokens {usage['in']:,} in / {usage['out']:,} out, cost ${usage['cost']:.4f}")
    for output in outputs:
        lines.append(f"  output: {output}")
    return lines
