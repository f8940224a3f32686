"""Cache identity: the one function that derives every cache key (records and windows).

A key covers everything that can change a result: the content hash of every input file, the
settings fingerprint (:meth:`~docvl.pipeline.settings.Settings.fingerprint`), the model, each task's
schema name and version, the envelope version, the prompt version (a digest of the system prompt,
the re-ask wording and every task's instruction, which embeds its schema) and the store format.
Editing any of them makes the next run recompute instead of serving a stale record or window.

Failures are never cached: the runners only store results whose errors are all
:attr:`~docvl.pipeline.policy.Policy.FINAL` (see :func:`docvl.pipeline.policy.is_final`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from docvl.pipeline.plan.prompt import SYSTEM_PROMPT
from docvl.pipeline.result import ENVELOPE_VERSION
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.specs import ONLY_PAGES, TaskSpec

#: The format of what the cache stores. Window results are pickled with their classes' import
#: paths, so this changes whenever those paths do (2: the stages moved under ``docvl.*``).
STORE_FORMAT = "2"


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
        f"store={STORE_FORMAT}",
        *map(str, parts),
    ]
    return f"docvl-{kind}-" + hashlib.sha256("|".join(fields).encode()).hexdigest()
