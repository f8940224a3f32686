"""End to end on the tiny random Qwen3-VL: the real processor, generate, constrained decoding.

These are the model layer's acceptance checks: a CLI run writes one schema-valid record whose input
tokens equal the plan's, the OpenAI-compatible path gives the same, two tasks share one prefill, and
a long document goes through map → reduce → check to one valid result.

Random weights terminate only on bounded schemas: every run here opts into
``Settings.decoder_bounds`` (``DOCVL_DECODER_BOUNDS=1`` for the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from docvl.api import counter_for
from docvl.cli import main
from docvl.pipeline.dev.server import ServerHandle, serve
from docvl.pipeline.engine import Engine
from docvl.pipeline.model.openai_backend import OpenAIBackend
from docvl.pipeline.model.transformers_backend import TransformersBackend
from docvl.pipeline.result import ResultEnvelope, envelope_json_schema
from docvl.pipeline.settings import Settings
from docvl.schemas import Invoice

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> Iterator[TransformersBackend]:
    local = TransformersBackend(str(tiny_model_dir))
    yield local
    local.close()


def planned_tokens(capsys: pytest.CaptureFixture[str], args: list[str]) -> int:
    capsys.readouterr()
    assert main(["plan", *args, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    return sum(w["input_tokens"] for d in plan["documents"] for w in d["windows"])


def check_record(record: dict[str, Any]) -> ResultEnvelope:
    jsonschema.validate(record, envelope_json_schema())
    return ResultEnvelope.model_validate(record)


@pytest.mark.usefixtures("prefect_harness")
def test_cli_run_extract_invoice_matches_plan(
    tiny_model_dir: Path,
    samples: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the result cache goes to ./.docvl-cache
    monkeypatch.setenv("DOCVL_DECODER_BOUNDS", "1")  # random weights need the bounded schema
    args = [
        str(samples / "invoice.pdf"),
        "--task",
        "extract",
        "--schema",
        "invoice",
        "--model",
        str(tiny_model_dir),
    ]
    out = tmp_path / "invoice.jsonl"
    assert main(["run", *args, "--out", str(out), "--no-progress"]) == 0
    assert "Loading weights" not in capsys.readouterr().err  # no tqdm bar from transformers
    [line] = out.read_text().splitlines()
    envelope = check_record(json.loads(line))
    assert envelope.status == "ok" and envelope.extraction is not None
    Invoice.model_validate(envelope.extraction.data)
    assert envelope.model is not None and envelope.model.backend == "transformers"
    assert envelope.usage.input_tokens == planned_tokens(capsys, args)


def test_openai_backend_against_local_server_matches_plan(
    backend: TransformersBackend,
    tiny_model_dir: Path,
    samples: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handle: ServerHandle = serve(backend)
    try:
        settings = Settings(
            backend="openai",
            base_url=handle.url,
            model=str(tiny_model_dir),
            tasks=("extract",),
            schema_name="invoice",
            decoder_bounds=True,
        )
        client = OpenAIBackend(settings)
        envelope = Engine(settings, client, counter_for(settings)).analyze(
            [samples / "invoice.pdf"]
        )[0]
        client.close()
    finally:
        handle.stop()
    check_record(envelope.model_dump(mode="json"))
    assert envelope.status == "ok" and envelope.extraction is not None
    assert envelope.model is not None and envelope.model.backend == "openai"
    args = [
        str(samples / "invoice.pdf"),
        "--task",
        "extract",
        "--schema",
        "invoice",
        "--model",
        str(tiny_model_dir),
    ]
    assert envelope.usage.input_tokens == planned_tokens(capsys, args)


def test_summary_and_extraction_share_one_prefill(tiny_model_dir: Path, samples: Path) -> None:
    settings = Settings(
        model=str(tiny_model_dir),
        tasks=("summary", "extract"),
        schema_name="invoice",
        decoder_bounds=True,
    )
    fresh = TransformersBackend(str(tiny_model_dir))  # no prefix cached from other tests
    try:
        envelope = Engine(settings, fresh, counter_for(settings)).analyze(
            [samples / "invoice.pdf"]
        )[0]
    finally:
        fresh.close()
    check_record(envelope.model_dump(mode="json"))
    assert envelope.summary is not None and envelope.extraction is not None
    assert envelope.timings.prefills == 1
    assert envelope.usage.requests == 2
    assert envelope.usage.cached_tokens > 0
    assert envelope.timings.prefill > 0


@pytest.mark.slow
def test_long_book_runs_map_reduce_to_one_valid_result(
    backend: TransformersBackend, tiny_model_dir: Path, corpus: Path
) -> None:
    # The whole 352-page book, with a small window so it needs several (the default window holds
    # ~160 of its pages; a 258k-token prefill is GPU work, not a CPU unit test).
    settings = Settings(
        model=str(tiny_model_dir),
        include_text=False,
        max_pixels=64 * 1024,
        min_pixels=16 * 1024,
        context_window=12_288,
        max_output_tokens=4_096,
        decoder_bounds=True,
    )
    envelope = Engine(settings, backend, counter_for(settings)).analyze(
        [corpus / "good/freeculture_book_352p.pdf"]
    )[0]
    check_record(envelope.model_dump(mode="json"))
    assert envelope.source.pages == 352
    windows = envelope.plan.windows
    assert len(windows) >= 3
    assert [p for w in windows for p in range(w.first_page, w.last_page + 1)] == list(range(1, 353))
    assert envelope.summary is not None
    assert envelope.status in ("ok", "partial")
