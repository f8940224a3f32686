"""docvl/review.py: the HTML review report, checked as data and in a real headless Chromium.

The browser tests start Debian's ``chromium`` through Playwright (no downloaded browser); CI
installs it (scripts/setup.sh). They are marked slow, never skipped: a missing browser fails them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docvl.api import Settings, analyze
from docvl.pipeline.dev.double import TextLayerModel
from docvl.pipeline.dev.synth import bad_invoice, write_pdf
from docvl.pipeline.errors import UsageError
from docvl.pipeline.result import GroundingItem, ResultEnvelope
from docvl.review import (
    PageImage,
    build_report,
    cited_pages,
    field_rows,
    load_envelopes,
    render_html,
    write_report,
)

PAYLOADS = (
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'onerror'\">",
    "</script><script>window.__pwned = 'close'</script>",
    "{{DATA}} {{NONCE}}",
)
CHROMIUM = "/usr/bin/chromium"


def _run(paths: list[Path], tasks: tuple[str, ...] = ("summary", "extract")) -> list[Any]:
    settings = Settings(tasks=tasks, schema_name="invoice")
    return analyze(paths, settings, TextLayerModel())


@pytest.fixture(scope="module")
def invoice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("review") / "invoice.pdf"
    bad_invoice(path)
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An invoice whose text layer carries script payloads in the fields and the summary."""
    path = tmp_path_factory.mktemp("hostile") / "hostile <b>x</b>.pdf"
    lines = ["INVOICE " + PAYLOADS[0], f"Vendor: {PAYLOADS[0]}", f"Customer: {PAYLOADS[1]}"]
    lines += [f"Invoice number: {PAYLOADS[2]}", f"Currency: {PAYLOADS[3]}", "Page 1 of 1"]
    write_pdf(path, [lines], "hostile")
    return path


def test_records_load_from_jsonl_and_from_an_output_dir(invoice: Path, tmp_path: Path) -> None:
    [env] = _run([invoice])
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(env.model_dump_json() + "\n\n", encoding="utf-8")
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "invoice.abc.json").write_text(env.model_dump_json(), encoding="utf-8")
    assert load_envelopes(jsonl) == [env]
    assert load_envelopes(outdir) == [env]
    (tmp_path / "bad.jsonl").write_text('{"not": "a record"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="record 1 is not a docvl result"):
        load_envelopes(tmp_path / "bad.jsonl")
    with pytest.raises(UsageError, match="no such"):
        load_envelopes(tmp_path / "missing.jsonl")


def test_fields_take_the_grounding_of_their_record() -> None:
    data = {
        "total": {"value": 12.5, "page": 2, "quote": "Total 12.50"},
        "line_items": [{"description": "Bolt", "amount": 3.0, "page": 1, "quote": "Bolt 3.00"}],
        "note": None,
    }
    items = [
        GroundingItem(path="total", pages=[2], status="grounded", page=2, bbox=(10, 20, 110, 40)),
        GroundingItem(path="line_items[0]", pages=[1], status="ungrounded"),
    ]
    image = PageImage("data:,", (0.0, 0.1, 1.0, 0.8), (200.0, 100.0))
    rows = {r["path"]: r for r in field_rows(data, items, {2: image})}
    assert set(rows) == {"total", "line_items[0].description", "line_items[0].amount", "note"}
    assert rows["total"]["value"] == "12.5" and rows["total"]["status"] == "grounded"
    # bbox (points) -> fractions of the letterboxed image: x/200, 0.1 + 0.8 * y/100.
    assert rows["total"]["rect"] == [0.05, 0.26, 0.5, 0.16]
    assert rows["line_items[0].amount"]["status"] == "ungrounded"
    amount = rows["line_items[0].amount"]
    assert amount["page"] == 1 and amount["rect"] is None
    assert rows["note"]["status"] is None


def test_cited_pages_and_missing_sources(invoice: Path, tmp_path: Path) -> None:
    [env] = _run([invoice])
    assert cited_pages(env) == [1]
    [view] = build_report([env], Settings())
    assert list(view["images"]) == ["1"]
    assert view["images"]["1"].startswith("data:image/jpeg;base64,")
    moved = env.model_copy(update={"source": env.source.model_copy(update={"path": "gone.pdf"})})
    [view] = build_report([moved], Settings())
    assert view["images"] == {} and any("not found" in w for w in view["warnings"])
    changed = tmp_path / "changed.pdf"
    shutil.copy(invoice, changed)
    with changed.open("ab") as fh:
        fh.write(b"\n% edited\n")
    edited = env.model_copy(update={"source": env.source.model_copy(update={"path": str(changed)})})
    [view] = build_report([edited], Settings())
    assert view["images"] == {} and any("changed since the run" in w for w in view["warnings"])


def test_document_text_cannot_close_the_data_script(hostile: Path) -> None:
    envs = _run([hostile])
    page = render_html(build_report(envs, Settings()), "t")
    data = page.split('<script type="application/json" id="data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data
    assert json.loads(data)[0]["name"] == hostile.name  # the JSON itself is intact
    assert page.count("<script") == 2  # the data block and the report's own script


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: run scripts/setup.sh"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _open(browser: Any, report: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    return page, errors, requests


@pytest.mark.slow
def test_selecting_a_field_shows_its_page_and_box(
    browser: Any, invoice: Path, tmp_path: Path
) -> None:
    samples = Path(__file__).resolve().parents[1] / "samples"
    envs = _run([invoice, samples / "report.pdf", samples / "deck.pptx"])
    results = tmp_path / "results.jsonl"
    results.write_text("".join(e.model_dump_json() + "\n" for e in envs), encoding="utf-8")
    report, count = write_report(results, tmp_path / "report.html", Settings())
    assert count == 3
    page, errors, requests = _open(browser, report)
    assert page.locator("tr.doc").count() == 3
    page.click('tr.doc[data-index="0"]')
    [item] = [i for i in envs[0].extraction.grounding.items if i.path == "invoice_number"]
    page.click('tr.field[data-path="invoice_number"]')
    assert page.get_attribute("#page img", "data-page") == str(item.page)
    img = page.locator("#page img").bounding_box()
    box = page.locator("#page .hl").bounding_box()
    assert item.bbox is not None and img is not None and box is not None
    x0, y0, x1, _ = item.bbox
    width_pt, height_pt = 595.0, 842.0  # A4, as synth writes it
    assert box["x"] - img["x"] == pytest.approx(x0 / width_pt * img["width"], abs=2)
    assert box["y"] - img["y"] == pytest.approx(y0 / height_pt * img["height"], abs=2)
    assert box["width"] == pytest.approx((x1 - x0) / width_pt * img["width"], abs=2)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    # Selecting another document replaces the view; its images are decoded only when shown.
    page.click('tr.doc[data-index="1"]')
    assert page.locator("h2").inner_text() == "report.pdf"
    assert page.locator("#page img").count() == 1
    assert errors == [] and requests == [report.as_uri()]


@pytest.mark.slow
def test_a_hostile_document_runs_no_script(browser: Any, hostile: Path, tmp_path: Path) -> None:
    envs: list[ResultEnvelope] = _run([hostile])
    assert envs[0].extraction is not None
    assert envs[0].extraction.data["vendor"]["name"]["value"] == PAYLOADS[0]  # it got in
    results = tmp_path / "results.jsonl"
    results.write_text(envs[0].model_dump_json() + "\n", encoding="utf-8")
    report, _ = write_report(results, tmp_path / "report.html", Settings())
    page, errors, requests = _open(browser, report)
    page.click('tr.field[data-path="vendor.name"]')
    page.click('tr.field[data-path="customer.name"]')
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#detail img:not([data-page])").count() == 0  # no injected <img>
    text = page.locator("#detail").inner_text()
    assert PAYLOADS[0] in text and "onerror=" in text  # shown as text, literally
    assert errors == [] and requests == [report.as_uri()]


def test_the_report_command(
    invoice: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from docvl.cli import main

    [env] = _run([invoice])
    results = tmp_path / "results.jsonl"
    results.write_text(env.model_dump_json() + "\n", encoding="utf-8")
    out = tmp_path / "r.html"
    assert main(["report", str(results), "--out", str(out), "--images", "none"]) == 0
    assert "report of 1 documents" in capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    assert "invoice_number" in page and "data:image/jpeg" not in page
    assert main(["report", str(results), "--images", "some"]) == 2
    assert main(["report", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such results file" in capsys.readouterr().err


@pytest.mark.slow
def test_a_batch_of_500_documents_is_paginated(browser: Any, tmp_path: Path) -> None:
    envs = [
        ResultEnvelope.model_validate(
            {
                "source": {"path": f"batch/doc-{i:03d}.pdf", "pages": 1},
                "status": "failed" if i % 50 == 7 else "ok",
                "errors": [{"code": "empty_file", "message": "empty"}] if i % 50 == 7 else [],
            }
        )
        for i in range(500)
    ]
    report = tmp_path / "big.html"
    report.write_text(render_html(build_report(envs, Settings(), "none"), "big"), encoding="utf-8")
    page, errors, _ = _open(browser, report)
    assert page.locator("tr.doc").count() == 50
    assert "page 1 of 10 (500 documents)" in page.locator(".pager").inner_text()
    page.get_by_text("next ›").click()
    assert page.locator("tr.doc").first.get_attribute("data-index") == "50"
    page.select_option("#filter", "failed")
    assert page.locator("tr.doc").count() == 10  # every failed one, on one page
    page.fill("#find", "doc-257")
    assert page.locator("tr.doc").count() == 1
    assert errors == []
