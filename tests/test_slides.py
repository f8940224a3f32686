from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from docvl.pipeline.errors import ConversionFailed, EmptyDocument
from docvl.pipeline.ingest.document import DocKind
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.slides import find_soffice
from docvl.pipeline.ingest.sniff import sniff
from docvl.pipeline.settings import Settings

pytestmark = pytest.mark.slow


def test_sample_deck_text_tables_chart_notes(samples: Path) -> None:
    with load_document(samples / "deck.pptx", Settings()) as doc:
        workdir = doc.workdir
        assert doc.kind is DocKind.PPTX and doc.page_count == 5
        assert workdir is not None and doc.render_path.is_file()
        assert (doc.pages[0].width_pt, doc.pages[0].height_pt) == pytest.approx(
            (960.0, 540.0), abs=0.5
        )
        table = doc.pages[2].text
        assert "Region | 2022 (k EUR) | 2023 (k EUR) | Change" in table
        assert "West | 760 | 705 | -7.2%" in table
        assert "Revenue 2023: Q1=4.2, Q2=5.1, Q3=6.3, Q4=7.4" in doc.pages[3].text
        assert doc.pages[1].text.endswith(
            "Notes: Stress that the failure rate fell fivefold after the rebuild."
        )
        assert all(p.has_text_layer for p in doc.pages[1:])
    assert not workdir.exists()  # close() removed the conversion


def test_unrecognized_shape_is_a_warning(corpus: Path) -> None:
    with load_document(corpus / "bad/unrecognized_shape.pptx", Settings()) as doc:
        assert doc.page_count == 3
        assert any(
            "slide 2, shape 100 'BadShape'" in w and "NotImplementedError" in w
            for w in doc.warnings
        )
        assert "Text in an unrecognized shape" in doc.pages[1].text


def test_image_only_deck_has_no_text_layer(corpus: Path) -> None:
    with load_document(corpus / "slides/image_only_deck_14s.pptx", Settings()) as doc:
        assert doc.page_count == 14
        assert sum(p.has_text_layer for p in doc.pages) <= 1


def test_zero_slides_checked_before_libreoffice(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # LibreOffice would be unreachable: not even tried
    with pytest.raises(EmptyDocument):
        load_document(corpus / "bad/zero_slides.pptx", Settings())


def test_missing_libreoffice_gives_install_hint(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConversionFailed, match="apt-get install"):
        load_document(samples / "deck.pptx", Settings())


def test_timeout_kills_conversion(samples: Path) -> None:
    with pytest.raises(ConversionFailed, match="did not finish within"):
        load_document(samples / "deck.pptx", Settings(slide_timeout_s=0.2))


@pytest.fixture(scope="module")
def legacy_ppt(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ppt")
    profile = out / "profile"
    subprocess.run(
        [
            find_soffice(),
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            "ppt",
            "--outdir",
            str(out),
            str(samples / "deck.pptx"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out / "deck.ppt"


def test_legacy_ppt(legacy_ppt: Path) -> None:
    assert sniff(legacy_ppt) is DocKind.PPT
    with load_document(legacy_ppt, Settings()) as doc:
        assert doc.kind is DocKind.PPT and doc.page_count == 5
        assert "Highlights of 2023" in doc.pages[1].text
        assert doc.pages[1].has_text_layer
