"""The package surface: the extraction as the user's own pydantic class, py.typed shipped."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from docvl.api import analyze, extraction_as
from docvl.pipeline.dev import synth
from docvl.pipeline.dev.double import TextLayerModel
from docvl.pipeline.result import ExtractionOutput, ResultEnvelope, Source
from docvl.pipeline.settings import Settings
from docvl.schemas import Invoice

REPO = Path(__file__).resolve().parents[1]


def test_extraction_as_the_users_class_through_the_engine(tmp_path: Path) -> None:
    """The text-layer double (pipeline/dev/double.py) answers with the document's truth."""
    generate, _schema = synth.DOCUMENTS["bad_invoice"]
    truth = generate(tmp_path / "invoice.pdf")
    settings = Settings(tasks=("extract",), schema_name="invoice")
    [record] = analyze([tmp_path / "invoice.pdf"], settings, backend=TextLayerModel())
    invoice = record.extraction_as(Invoice)
    assert isinstance(invoice, Invoice)
    assert invoice.model_dump(mode="json", exclude_none=True) == Invoice.model_validate(
        truth
    ).model_dump(mode="json", exclude_none=True)
    assert extraction_as(record, Invoice) == invoice


class Order(BaseModel):
    number: str
    total: float


def _record(**fields: object) -> ResultEnvelope:
    return ResultEnvelope.model_validate(
        {"source": Source(path="in/a.pdf"), "status": "ok", **fields}
    )


def test_extraction_as_validates_against_the_class() -> None:
    data = {"number": "PO-7", "total": "12.5"}
    record = _record(
        extraction=ExtractionOutput(schema_name="m:Order", schema_version="1", data=data)
    )
    order = record.extraction_as(Order)
    assert order == Order(number="PO-7", total=12.5)
    wrong = _record(extraction=ExtractionOutput(schema_name="m:O", schema_version="1", data={}))
    with pytest.raises(ValidationError):
        wrong.extraction_as(Order)


def test_no_extraction_says_why() -> None:
    failed = _record(status="failed", errors=[{"code": "corrupt_document", "message": "x"}])
    with pytest.raises(LookupError, match=r"in/a.pdf: no extraction \(failed: corrupt_document\)"):
        failed.extraction_as(Order)


def test_every_package_ships_py_typed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["*"]
    for package in ("docvl", "pipeline", "flows", "schemas"):
        assert (REPO / package / "py.typed").is_file(), package
