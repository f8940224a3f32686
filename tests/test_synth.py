"""Synthetic documents: they load, their text layers hold every truth record on its page, and their
truths have the promised shape (800 lines on 40 pages, 120 rows on one page, split rows, figures
that do not add up)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from docvl.pipeline.dev import printed, synth
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.ingest.textlayer import text_is_usable
from docvl.pipeline.settings import Settings
from docvl.schemas import Invoice, PurchaseOrder, Tables


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every generator's PDF (default arguments) and truth, made once."""
    out = tmp_path_factory.mktemp("synth")
    docs = {}
    for name, (generate, _schema) in synth.DOCUMENTS.items():
        path = out / f"{name}.pdf"
        docs[name] = (path, generate(path))
    return docs


def load(path: Path) -> LoadedDocument:
    return load_document(path, Settings())


def records(node: Any) -> Iterator[dict[str, Any]]:
    """Every object that cites an integer ``page``."""
    if isinstance(node, dict):
        if isinstance(node.get("page"), int):
            yield node
        for value in node.values():
            yield from records(value)
    elif isinstance(node, list):
        for value in node:
            yield from records(value)


def page_lines(doc: LoadedDocument, page: int) -> list[str]:
    return [line.strip() for line in doc.pages[page - 1].text.splitlines() if line.strip()]


def money(value: float) -> str:
    return f"{value:.2f}"


@pytest.mark.parametrize("name", sorted(synth.DOCUMENTS))
def test_loads_with_a_usable_text_layer_on_every_page(
    made: dict[str, tuple[Path, dict[str, Any]]], name: str
) -> None:
    path, _truth = made[name]
    doc = load(path)
    expected_pages = {"purchase_order": 40, "table_page": 1, "split_rows": 6, "bad_invoice": 1}
    assert doc.page_count == expected_pages[name]
    assert doc.warnings == []
    for info in doc.pages:
        assert info.has_text_layer and text_is_usable(info.text), (name, info.page)
        assert (info.width_pt, info.height_pt) == (printed.A4_WIDTH, printed.A4_HEIGHT)


@pytest.mark.parametrize("name", sorted(synth.DOCUMENTS))
def test_every_record_is_printed_on_its_page(
    made: dict[str, tuple[Path, dict[str, Any]]], name: str
) -> None:
    path, truth = made[name]
    doc = load(path)
    lines = {p: page_lines(doc, p) for p in range(1, doc.page_count + 1)}
    found = list(records(truth))
    assert found
    for record in found:
        page, quote = record["page"], record.get("quote")
        if quote is None:  # table headers: the caption and the column names
            assert f"Table {record['table']}: {record['caption']}" in lines[page]
            assert synth.CELL_SEP.join(record["columns"]) in lines[page]
            continue
        assert quote in lines[page], (name, record)
        assert all(quote not in lines[p] for p in lines if p != page)
        if not synth.START_RE.match(quote):  # a split line's start shows no figures
            for key in ("amount", "unit_price"):
                if record.get(key) is not None:
                    assert money(record[key]) in quote
        if isinstance(record.get("value"), float):
            assert quote.endswith(money(record["value"]))
        elif isinstance(record.get("value"), str):
            assert quote.endswith(record["value"])


def test_purchase_order_shape(made: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    _path, truth = made["purchase_order"]
    lines = truth["lines"]
    assert len(lines) == 800
    assert [line["sku"] for line in lines] == [f"SKU-{n:04d}" for n in range(1, 801)]
    assert [line["page"] for line in lines] == [1 + i // 20 for i in range(800)]
    for line in lines:
        assert synth.LINE_RE.match(line["quote"])
        assert round(line["quantity"] * line["unit_price"], 2) == line["amount"]
    assert truth["po_number"] == {
        "value": "PO-2024-0815",
        "page": 1,
        "quote": "PO number: PO-2024-0815",
    }
    assert truth["buyer"]["name"]["value"] == "Hollis Engineering Ltd"
    assert truth["supplier"]["tax_id"]["page"] == 1
    assert truth["order_date"]["value"] == "2024-03-04"
    assert truth["currency"]["value"] == "EUR"
    line_sum = sum(Decimal(money(line["amount"])) for line in lines)
    assert truth["total"]["page"] == 40 and money(truth["total"]["value"]) == str(line_sum)
    # the truth is the schema's data (the lines checked one by one: no list bound applies)
    assert synth.dump_truth(PurchaseOrder, truth) == truth
    short = PurchaseOrder.model_validate({**truth, "lines": lines[:20]})
    assert short.model_dump(mode="json") == {**truth, "lines": lines[:20]}


def test_purchase_order_arguments(tmp_path: Path) -> None:
    truth = synth.purchase_order(tmp_path / "po.pdf", lines=7, pages=3)
    assert [line["page"] for line in truth["lines"]] == [1, 1, 2, 2, 3, 3, 3]
    assert load(tmp_path / "po.pdf").page_count == 3
    with pytest.raises(ValueError):
        synth.purchase_order(tmp_path / "bad.pdf", lines=5, pages=0)


def test_table_page_shape(made: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    path, truth = made["table_page"]
    assert Tables.model_validate(truth).model_dump(mode="json") == truth
    assert truth["tables"] == [
        {
            "table": 1,
            "caption": synth.TABLE_CAPTION,
            "columns": list(synth.TABLE_COLUMNS),
            "page": 1,
        }
    ]
    rows = truth["rows"]
    assert len(rows) == 120 and {row["page"] for row in rows} == {1}
    assert [row["cells"][0] for row in rows] == [str(n) for n in range(1, 121)]
    assert all(len(row["cells"]) == len(synth.TABLE_COLUMNS) for row in rows)
    assert page_lines(load(path), 1)[-1] == rows[-1]["quote"]  # the last row is on the page


def test_split_rows_continue_on_the_next_page(
    made: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    path, truth = made["split_rows"]
    doc = load(path)
    split = synth.split_lines(truth)
    assert [line["page"] for line in split] == [1, 2, 4, 5]
    for line in split:
        page = line["page"]
        start = synth.START_RE.match(line["quote"])
        assert start and start["sku"] == line["sku"]
        assert line["quote"] in page_lines(doc, page)
        # the start is the page's last line before the footer
        assert page_lines(doc, page)[-2:] == [line["quote"], f"Page {page} of 6"]
        rest = [m for m in map(synth.CONT_RE.match, page_lines(doc, page + 1)) if m]
        assert len(rest) == 1
        assert f"{start['description']} {rest[0]['description']}" == line["description"]
        assert float(rest[0]["amount"]) == line["amount"]
        assert float(rest[0]["unit_price"]) == line["unit_price"]
        assert float(rest[0]["quantity"]) == line["quantity"]
        assert page_lines(doc, page + 1)[1] == rest[0].string  # right after the running header
    # no split after page 3
    assert not any(synth.CONT_RE.match(line) for line in page_lines(doc, 4))
    assert len(truth["lines"]) == 72
    assert PurchaseOrder.model_validate(truth).model_dump(mode="json") == truth


def test_bad_invoice_does_not_add_up(made: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    path, truth = made["bad_invoice"]
    assert Invoice.model_validate(truth).model_dump(mode="json") == truth
    items = truth["line_items"]
    assert len(items) == 6
    line_sum = sum(Decimal(money(i["amount"])) for i in items)
    subtotal = Decimal(money(truth["subtotal"]["value"]))
    tax = Decimal(money(truth["tax"]["value"]))
    total = Decimal(money(truth["total"]["value"]))
    assert subtotal - line_sum == synth.SUBTOTAL_ERROR
    assert total - (subtotal + tax) == synth.TOTAL_ERROR
    lines = page_lines(load(path), 1)
    assert f"Subtotal: {subtotal}" in lines and f"Total: {total}" in lines
    assert truth["invoice_number"]["value"] == "INV-2024-0342"
    assert truth["vendor"]["name"]["quote"] in lines
    assert truth["customer"]["tax_id"] is None  # not printed


def test_a_multi_page_invoice_adds_up_and_is_printed_where_its_truth_says(
    tmp_path: Path,
) -> None:
    truth = synth.invoice(tmp_path / "inv.pdf", lines=30, pages=3)
    doc = load(tmp_path / "inv.pdf")
    assert doc.page_count == 3
    items = truth["line_items"]
    assert [sum(1 for i in items if i["page"] == p) for p in (1, 2, 3)] == [10, 10, 10]
    for item in items:
        assert item["quote"] in page_lines(doc, item["page"])
    line_sum = sum(Decimal(money(i["amount"])) for i in items)
    subtotal = Decimal(money(truth["subtotal"]["value"]))
    tax = Decimal(money(truth["tax"]["value"]))
    assert subtotal == line_sum and Decimal(money(truth["total"]["value"])) == subtotal + tax
    assert truth["total"]["page"] == 3 and truth["invoice_number"]["page"] == 1
    assert truth["total"]["quote"] in page_lines(doc, 3)
    assert Invoice.model_validate(truth).model_dump(mode="json") == truth


def test_deterministic(tmp_path: Path) -> None:
    for name, (generate, _schema) in synth.DOCUMENTS.items():
        if name == "purchase_order":
            a = generate(tmp_path / "a.pdf", lines=60, pages=3)
            b = generate(tmp_path / "b.pdf", lines=60, pages=3)
        else:
            a, b = generate(tmp_path / "a.pdf"), generate(tmp_path / "b.pdf")
        assert a == b, name
        assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes(), name
    other = synth.bad_invoice(tmp_path / "c.pdf", seed=99)
    assert other["line_items"] != synth.bad_invoice(tmp_path / "d.pdf")["line_items"]


def test_truth_on_pages(made: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    _path, truth = made["purchase_order"]
    middle = synth.truth_on_pages(truth, [3, 4])
    assert [line["page"] for line in middle["lines"]] == [3] * 20 + [4] * 20
    assert middle["po_number"] is None and middle["buyer"] is None and middle["total"] is None
    assert set(middle) == set(truth)
    first = synth.truth_on_pages(truth, [1])
    assert first["buyer"] == truth["buyer"] and first["total"] is None
    assert synth.truth_on_pages(truth, range(1, 41)) == truth
    first["lines"][0]["description"] = "changed"
    assert truth["lines"][0]["description"] != "changed"  # a copy
