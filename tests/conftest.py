"""Shared fixtures. The real-world corpus lives outside the repo (never copy it in): ``DOCVL_CORPUS``
or ``<repo>/../shared/corpus``. A missing corpus fails the tests that need it, loudly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_path() -> Path:
    return Path(os.environ.get("DOCVL_CORPUS", REPO.parent / "shared" / "corpus"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: slower tests (LibreOffice, long documents); run by default")


@pytest.fixture(scope="session")
def corpus() -> Path:
    path = corpus_path()
    if not (path / "MANIFEST.tsv").is_file():
        pytest.fail(f"test corpus not found at {path} (no MANIFEST.tsv): set DOCVL_CORPUS to the corpus "
                    "directory (see /work/shared/corpus/README.md)")
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
    """The tiny random Qwen3-VL checkpoint (real architecture, processor and template), built once."""
    from pipeline.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3-vl"), seed=0)
