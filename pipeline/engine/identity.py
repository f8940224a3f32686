"""Cache identity: the one function that derives every cache key (records and windows).

A key covers everything that can change a result: the content hash of every input file, the
settings fingerprint (:meth:`~pipeline.settings.Settings.fingerprint`), the model, each task's
schema name and version, the envelope version, and the prompt version (a digest of the system
prompt, the re-ask wording and every task's instruction, which embeds its schema). Editing any of
them makes the next run recompute instead of serving a stale record or window.

Failures are never cached: the runners only store results whose errors are all
:attr:`~pipeline.errors.Policy.FINAL` (see :func:`pipeline.errors.is_final`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pipeline.plan.prompt import SYSTEM_PROMPT
from pipeline.result import ENVELOPE_VERSION
from pipeline.settings import Settings
from pipeline.tasks.specs import ONLY_PAGES, TaskSpec


def prompt_version(specs: Sequence[TaskSpec]) -> str:
    """Digest of the system prompt, the re-ask wording and every task instruction (schemas
    included)."""
    digest = hashlib.sha256(SYSTEM_PROMPT.encode())
    digest.update(ONLY_PAGES.encode())
    for spec in specs:
        digest.update(f"\0{spec.name}\0{spec.instruction}".encode())
    return digest.hexdigest()[:16]


def cache_key(
    kind: str,
    shas: Sequence[str | None],
    settings: Settings,
    specs: Sequence[TaskSpec],
    *parts: object,
) -> str:
    """The key of one cached result: ``kind`` (``record``, ``window``), the inputs' content hashes,
    the settings and tasks, and ``parts`` that locate it (a document or window index)."""
    fields = [
        kind,
        ",".join(sha or "-" for sha in shas),
        settings.fingerprint(),
        settings.model,
        ";".join(f"{s.name}={s.schema_name}@{s.schema_version}" for s in specs),
        f"envelope={ENVELOPE_VERSION}",
        f"prompt={prompt_version(specs)}",
        *map(str, parts),
    ]
    return f"docvl-{kind}-" + hashlib.sha256("|".join(fields).encode()).hexdigest()
