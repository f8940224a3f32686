"""Shared fixtures. The real-world corpus lives outside the repo (never copy it in):
``DOCVL_CORPUS`` or ``<repo>/../shared/corpus``. A missing corpus fails the tests that need it,
loudly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_path() -> Path:
    return Path(os.environ.get("DOCVL_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_path()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.fail(
            f"test corpus not found at {path} (no MANIFEST.tsv): set DOCVL_CORPUS to the corpus "
            "directory (see ../shared/corpus/README.md, beside the repository)"
        )
    return path


@pytest.fixture(scope="session")
def samples() -> Path:
    path = REPO / "samples"
    missing = [n for n in ("invoice.pdf", "report.pdf", "deck.pptx") if not (path / n).is_file()]
    if missing:
        pytest.fail(f"samples missing: {missing}; run .venv/bin/python scripts/make_samples.py")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen3-VL checkpoint (real architecture, processor and template), built
    once."""
    from docvl.pipeline.dev.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3-vl"), seed=0)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for every in-process flow test (starting one costs 6-30 s)."""
    import flowkit

    # A task over a tag concurrency limit retries after this long (30 s by default).
    os.environ.setdefault("PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS", "1")
    with flowkit.harness():
        yield


@pytest.fixture
def flowkit_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fresh scripted-backend counters and no leftover test knobs in the environment."""
    import flowkit

    flowkit.reset()
    for var in ("DOCVL_TEST_CALL_LOG", "DOCVL_TEST_DELAY_S", "DOCVL_TEST_FAIL_FIRST"):
        monkeypatch.delenv(var, raising=False)
