"""Regenerate docs/report.png, the README's picture of ``docvl report``.

    .venv/bin/python scripts/report_screenshot.py

Runs a small batch (a synthetic invoice, samples/report.pdf, samples/deck.pptx) on the
deterministic text-layer double (pipeline/dev/double.py), writes the report and photographs it in
Debian's chromium with the invoice's ``invoice_number`` field selected.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from docvl.api import Settings, analyze  # noqa: E402
from docvl.pipeline.dev.double import TextLayerModel  # noqa: E402
from docvl.pipeline.dev.synth import bad_invoice  # noqa: E402
from docvl.review import write_report  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        invoice = work / "invoice-0342.pdf"
        bad_invoice(invoice)
        paths = [invoice, REPO / "samples" / "report.pdf", REPO / "samples" / "deck.pptx"]
        settings = Settings(tasks=("summary", "extract"), schema_name="invoice")
        envelopes = analyze(paths, settings, TextLayerModel())
        results = work / "results.jsonl"
        results.write_text("".join(e.model_dump_json() + "\n" for e in envelopes))
        report, _ = write_report(results, work / "report.html", Settings())
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 820})
            page.goto(report.as_uri())
            page.click('tr.field[data-path="invoice_number"]')
            out = REPO / "docs" / "report.png"
            page.screenshot(path=str(out))
            browser.close()
    print(out)


if __name__ == "__main__":
    main()
