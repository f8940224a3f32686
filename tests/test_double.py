"""The text-layer test double: schema-valid replies equal to the truth of the pages shown, the
output budget cut like a server's, records only from pages in the prompt, recorded calls."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from docvl.api import analyze
from docvl.pipeline.dev import synth
from docvl.pipeline.dev.double import TextLayerModel
from docvl.pipeline.dev.reader import read_pages
from docvl.pipeline.dev.request import request_schema
from docvl.pipeline.dev.tiny import build_tokenizer
from docvl.pipeline.ingest.document import LoadedDocument
from docvl.pipeline.ingest.load import load_document
from docvl.pipeline.model.base import GenerationRequest, ModelBackend
from docvl.pipeline.plan.count import TokenCounter
from docvl.pipeline.plan.planner import page_content
from docvl.pipeline.plan.prompt import ImagePart, Part, TextPart, Turn, document_header, page_marker
from docvl.pipeline.settings import Settings
from docvl.pipeline.tasks.confidence import field_confidence
from docvl.pipeline.tasks.jsonparse import JsonParseError
from docvl.pipeline.tasks.reduce import partial_parts, reduce_instruction
from docvl.pipeline.tasks.repair import validate_reply
from docvl.pipeline.tasks.specs import TaskSpec, only_pages, task_specs
from docvl.schemas import (
    Answer,
    DocumentSummary,
    PurchaseOrder,
    Receipt,
    decoder_schema,
    reply_schema,
)

BIG = 1_000_000  # an output budget nothing reaches
Made = dict[str, tuple[LoadedDocument, dict[str, Any]]]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """Every synth document (default arguments), loaded, with its truth."""
    out = tmp_path_factory.mktemp("double")
    docs = {}
    for name, (generate, _schema) in synth.DOCUMENTS.items():
        truth = generate(out / f"{name}.pdf")
        docs[name] = (load_document(out / f"{name}.pdf", Settings()), truth)
    return docs


def content_of(doc: LoadedDocument, pages: Sequence[int], settings: Settings) -> list[Part]:
    """The prompt content of ``pages`` of ``doc``, laid out as the engine lays it out."""
    parts: list[Part] = [document_header(1, doc.path.name, doc.page_count)]
    for page in pages:
        parts.extend(page_content(0, doc.pages[page - 1], doc.kind, settings))
    return parts


def spec_for(
    task: str, schema: str | None = None, question: str | None = None, max_output: int = BIG
) -> TaskSpec:
    settings = Settings(
        tasks=(task,),  # type: ignore[arg-type]
        schema_name=schema,
        question=question,
        max_output_tokens=max_output,
    )
    [spec] = task_specs(settings)
    return spec


def ask(
    model: TextLayerModel,
    doc: LoadedDocument,
    pages: Sequence[int],
    spec: TaskSpec,
    settings: Settings | None = None,
) -> BaseModel:
    """One request over ``pages``; the reply validated against the spec's model."""
    content = content_of(doc, pages, settings or Settings())
    [generation] = model.generate(content, [spec.request(0.0, pages=pages)])
    assert generation.finish_reason == "stop"
    return validate_reply(generation.text, spec.model)


def dumped(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json")


def visible_truth(truth: dict[str, Any], pages: Sequence[int]) -> dict[str, Any]:
    """What a reader of just ``pages`` can report: the truth on those pages, with a line split
    over a page break reduced to its start (numbers unknown) when the next page is not shown."""
    out = synth.truth_on_pages(truth, pages)
    for line in out.get("lines", []):
        if line in synth.split_lines(truth) and line["page"] + 1 not in pages:
            head = synth.START_RE.match(line["quote"])
            assert head is not None
            line.update(description=head["description"], quantity=None)
            line.update(unit_price=None, amount=None)
    return out


def test_is_a_model_backend() -> None:
    model = TextLayerModel()
    assert isinstance(model, ModelBackend)
    assert (model.name, model.model_id) == ("textlayer", "docvl-textlayer-double")
    model.close()
    model.close()
    assert model.closed


@pytest.mark.parametrize(
    ("name", "schema"),
    [("table_page", "tables"), ("bad_invoice", "invoice"), ("split_rows", "purchase_order")],
)
def test_whole_document_equals_the_truth(made: Made, name: str, schema: str) -> None:
    doc, truth = made[name]
    pages = list(range(1, doc.page_count + 1))
    reply = ask(TextLayerModel(), doc, pages, spec_for("extract", schema))
    assert dumped(reply) == truth


def test_purchase_order_pages_equal_the_truth_of_those_pages(made: Made) -> None:
    doc, truth = made["purchase_order"]
    spec = spec_for("extract", "purchase_order")
    model = TextLayerModel()
    for pages in ([1], [3, 4], [40], [2, 5, 9], list(range(1, 11)), [39, 40]):
        assert dumped(ask(model, doc, pages, spec)) == synth.truth_on_pages(truth, pages), pages


def test_one_reply_holds_every_line_unless_the_schema_caps_lists(made: Made) -> None:
    """800 lines in one prompt: all of them under an unbounded schema; under the bounded decoder
    schema a constrained decoder stops at its ``maxItems``."""
    doc, truth = made["purchase_order"]
    pages = list(range(1, 41))
    content = content_of(doc, pages, Settings())
    model = TextLayerModel()
    spec = spec_for("extract", "purchase_order")
    unbounded = GenerationRequest(spec.instruction, reply_schema(PurchaseOrder), BIG)
    [generation] = model.generate(content, [unbounded])
    assert json.loads(generation.text) == truth
    bounded = decoder_schema(PurchaseOrder)
    cap = bounded["properties"]["lines"]["maxItems"]
    assert cap < 800
    [generation] = model.generate(content, [GenerationRequest(spec.instruction, bounded, BIG)])
    reply = json.loads(generation.text)
    assert reply["lines"] == truth["lines"][:cap]
    assert reply["total"] == truth["total"] and reply["po_number"] == truth["po_number"]


def test_split_rows_are_reported_from_where_they_start(made: Made) -> None:
    doc, truth = made["split_rows"]
    spec = spec_for("extract", "purchase_order")
    model = TextLayerModel()
    first = synth.split_lines(truth)[0]  # starts on page 1, ends on page 2
    both = dumped(ask(model, doc, [1, 2], spec))
    assert first in both["lines"]
    alone = dumped(ask(model, doc, [1], spec))
    [fragment] = [line for line in alone["lines"] if line["sku"] == first["sku"]]
    assert fragment["page"] == 1 and fragment["quote"] == first["quote"]
    assert first["description"].startswith(fragment["description"])
    assert fragment["description"] != first["description"]
    assert (fragment["quantity"], fragment["amount"]) == (None, None)
    # page 2 alone: the rest of the row is not reported (its start is not shown)
    second = dumped(ask(model, doc, [2], spec))
    assert first["sku"] not in {line["sku"] for line in second["lines"]}
    for pages in ([1], [2], [1, 2], [2, 3], [3, 4, 5], [1, 3, 5], list(range(1, 7))):
        assert dumped(ask(model, doc, pages, spec)) == visible_truth(truth, pages), pages


def test_a_reask_for_some_pages_lists_only_their_records(made: Made) -> None:
    """The completeness re-ask shows page N with N+1 and asks only for N's records."""
    doc, truth = made["split_rows"]
    spec = spec_for("extract", "purchase_order")
    first = synth.split_lines(truth)[0]  # starts on page 1, ends on page 2
    reply = dumped(ask(TextLayerModel(), doc, [1, 2], only_pages(spec, [1], [1, 2])))
    assert {line["page"] for line in reply["lines"]} == {1}
    assert reply["lines"] == visible_truth(truth, [1, 2])["lines"][: len(reply["lines"])]
    assert first in reply["lines"]  # whole: its rest was read on page 2
    assert only_pages(spec, [1, 2], [1, 2]) is spec  # every shown page asked: no restriction


def test_token_probability_gives_every_field_that_confidence(made: Made) -> None:
    doc, _truth = made["bad_invoice"]
    spec = spec_for("extract", "invoice")
    content = content_of(doc, [1], Settings())
    [plain] = TextLayerModel().generate(content, [spec.request(0.0, pages=[1])])
    [sure] = TextLayerModel(token_probability=0.8).generate(content, [spec.request(0.0, pages=[1])])
    assert plain.token_logprobs == () and sure.text == plain.text
    assert "".join(piece for piece, _ in sure.token_logprobs) == sure.text
    confidence = field_confidence(sure.text, sure.token_logprobs)
    assert confidence and all(c == pytest.approx(0.8) for c in confidence.values())


def test_only_pages_in_the_prompt_are_reported(made: Made) -> None:
    doc, _truth = made["purchase_order"]
    spec = spec_for("extract", "purchase_order")
    model = TextLayerModel()
    rng = random.Random(7)
    for _ in range(25):
        pages = sorted(rng.sample(range(1, 41), rng.randint(1, 6)))
        reply = dumped(ask(model, doc, pages, spec))
        cited = {line["page"] for line in reply["lines"]}
        cited |= {v["page"] for v in reply.values() if isinstance(v, dict) and "page" in v}
        assert cited <= set(pages)
        assert len(reply["lines"]) == 20 * len(pages)
        assert model.calls[-1].pages == tuple(pages)
    assert len(model.calls) == 25


def test_pages_without_a_text_layer_show_nothing() -> None:
    content: list[Part] = [
        document_header(1, "scan.pdf", 2),
        page_marker(1),
        ImagePart(0, 1, 1024, 768),
        page_marker(2),
        ImagePart(0, 2, 1024, 768),
    ]
    spec = spec_for("extract", "purchase_order")
    [generation] = TextLayerModel().generate(content, [spec.request(0.0, pages=[1, 2])])
    reply = validate_reply(generation.text, spec.model)
    assert dumped(reply) == dumped(spec.model())
    assert [(p.page, p.lines) for p in read_pages(content)] == [(1, ()), (2, ())]


def test_a_reply_over_the_budget_is_cut_and_reported_as_length(made: Made) -> None:
    doc, truth = made["table_page"]
    spec = spec_for("extract", "tables", max_output=4096)
    counter = TokenCounter()
    model = TextLayerModel(counter)
    content = content_of(doc, [1], Settings())
    request = spec.request(0.0, pages=[1])
    full = model.reply(content, read_pages(content), request)
    assert json.loads(full) == truth
    assert counter.text(full) > request.max_new_tokens == 4096
    [generation] = model.generate(content, [request])
    assert generation.finish_reason == "length"
    assert full.startswith(generation.text) and len(generation.text) < len(full)
    assert generation.output_tokens == counter.text(generation.text) <= request.max_new_tokens
    assert counter.text(full[: len(generation.text) + 1]) > request.max_new_tokens  # the longest
    with pytest.raises(json.JSONDecodeError):
        json.loads(generation.text)
    with pytest.raises((JsonParseError, ValueError)):
        validate_reply(generation.text, spec.model)
    # deterministic: a re-ask (turns, higher temperature) is cut the same way
    again = model.generate(
        content,
        [spec.request(0.7, turns=[Turn(generation.text, "too long")], pages=[1])],
    )[0]
    assert (again.text, again.finish_reason) == (generation.text, "length")
    assert again.input_tokens > generation.input_tokens


def test_a_small_budget_cuts_any_reply(made: Made) -> None:
    doc, _truth = made["bad_invoice"]
    for max_new_tokens in (1, 20, 50, 200):
        spec = spec_for("extract", "invoice", max_output=max_new_tokens)
        content = content_of(doc, [1], Settings())
        [generation] = TextLayerModel().generate(content, [spec.request(0.0, pages=[1])])
        assert generation.finish_reason == "length"
        assert 0 < generation.output_tokens <= max_new_tokens
        with pytest.raises((JsonParseError, ValueError)):
            validate_reply(generation.text, spec.model)


def test_exact_tokenizer_cuts_at_the_token_budget(made: Made) -> None:
    """With a tokenizer the reply is its first ``max_new_tokens`` tokens, as a server returns."""
    doc, truth = made["bad_invoice"]
    tokenizer = build_tokenizer()
    counter = TokenCounter(tokenizer)
    model = TextLayerModel(counter)
    content = content_of(doc, [1], Settings())
    full_spec = spec_for("extract", "invoice")
    [whole] = model.generate(content, [full_spec.request(0.0, pages=[1])])
    assert json.loads(whole.text) == truth and whole.finish_reason == "stop"
    assert whole.output_tokens == counter.text(whole.text)
    assert whole.input_tokens == counter.prompt(content, full_spec.instruction)
    spec = spec_for("extract", "invoice", max_output=100)
    [cut] = model.generate(content, [spec.request(0.0, pages=[1])])
    ids = tokenizer.encode(whole.text, add_special_tokens=False)
    assert cut.finish_reason == "length" and cut.output_tokens == 100
    assert cut.text == tokenizer.decode(ids[:100]) and whole.text.startswith(cut.text)


def test_summary_and_answer_cite_shown_pages(made: Made) -> None:
    doc, truth = made["bad_invoice"]
    model = TextLayerModel()
    summary = ask(model, doc, [1], spec_for("summary"))
    assert isinstance(summary, DocumentSummary)
    assert summary.title == "INVOICE" and summary.key_points
    assert {p for k in summary.key_points for p in k.pages} == {1}
    answer = ask(model, doc, [1], spec_for("ask", question="What is the invoice total?"))
    assert isinstance(answer, Answer)
    assert answer.found and answer.pages == [1]
    assert answer.answer == truth["total"]["quote"]
    assert [(q.page, q.text) for q in answer.quotes] == [(1, truth["total"]["quote"])]
    missing = ask(model, doc, [1], spec_for("ask", question="Which colour is the sky?"))
    assert isinstance(missing, Answer)
    assert not missing.found and missing.pages == [] and missing.quotes == []
    po, _ = made["purchase_order"]
    long = ask(model, po, range(1, 41), spec_for("summary"))
    assert isinstance(long, DocumentSummary)
    assert len(long.key_points) == 12
    cited = [p for k in long.key_points for p in k.pages]
    assert cited[0] == 1 and cited[-1] == 40 and cited == sorted(cited)
    assert len({k.point for k in long.key_points}) == 12  # no running header repeated


def test_several_tasks_share_one_call(made: Made) -> None:
    doc, truth = made["split_rows"]
    settings = Settings(
        tasks=("summary", "extract", "ask"),
        schema_name="purchase_order",
        question="What is the PO number?",
        max_output_tokens=BIG,
    )
    specs = task_specs(settings)
    pages = list(range(1, 7))
    content = content_of(doc, pages, settings)
    counter = TokenCounter()
    model = TextLayerModel(counter)
    generations = model.generate(content, [s.request(0.0, pages=pages) for s in specs])
    values = [validate_reply(g.text, s.model) for g, s in zip(generations, specs, strict=True)]
    assert isinstance(values[0], DocumentSummary) and isinstance(values[2], Answer)
    assert dumped(values[1]) == truth
    assert values[2].answer == truth["po_number"]["quote"]
    for generation, spec in zip(generations, specs, strict=True):
        assert generation.input_tokens == counter.prompt(content, spec.instruction)
        assert generation.output_tokens == counter.text(generation.text)
        assert json.dumps(json.loads(generation.text), separators=(",", ":")) == generation.text
    assert [g.cached_tokens for g in generations] == [0] + [counter.content(content)] * 2
    # the same content again: a reused prefix
    again = model.generate(content, [specs[0].request(0.0, pages=pages)])[0]
    assert again.cached_tokens == counter.content(content) and again.text == generations[0].text
    assert [c.request for c in model.calls[:3]] == [s.request(0.0, pages=pages) for s in specs]
    assert all(c.pages == tuple(pages) for c in model.calls)


def test_reply_keys_follow_the_schema(made: Made) -> None:
    doc, _truth = made["bad_invoice"]
    spec = spec_for("extract", "invoice")
    content = content_of(doc, [1], Settings())
    [generation] = TextLayerModel().generate(content, [spec.request(0.0, pages=[1])])
    reply = json.loads(generation.text)
    assert list(reply) == list(spec.model.model_fields)
    item_keys = ["description", "quantity", "unit_price", "amount", "page", "quote"]
    assert list(reply["line_items"][0]) == item_keys


def test_reduce_calls_merge_partials(made: Made) -> None:
    doc, _truth = made["purchase_order"]
    model = TextLayerModel()
    for task, question in (("summary", None), ("ask", "What is the total?")):
        spec = spec_for(task, question=question)
        parts = [ask(model, doc, range(a, a + 10), spec) for a in (1, 11, 21, 31)]
        labels = [f"pages {a}-{a + 9}" for a in (1, 11, 21, 31)]
        content = partial_parts(list(zip(labels, parts, strict=True)))
        request = GenerationRequest(reduce_instruction(spec), spec.json_schema, BIG)
        [generation] = model.generate(content, [request])
        merged = validate_reply(generation.text, spec.model)
        if isinstance(merged, Answer):
            assert merged.found and merged.pages == [40]
        else:
            assert isinstance(merged, DocumentSummary)
            assert len(merged.key_points) == 12 and merged.title == "PURCHASE ORDER"
        assert model.calls[-1].pages == ()


def test_request_schema_and_unsupported_schemas() -> None:
    assert request_schema(spec_for("extract", "po").request(0.0))[0] == "purchase_order"
    bare = GenerationRequest("Task: extract ... into the 'invoice' schema ...")
    assert request_schema(bare)[0] == "invoice"
    with pytest.raises(ValueError, match="which schema"):
        request_schema(GenerationRequest("Say hello"))
    spec = spec_for("extract", "receipt")
    assert spec.model is Receipt
    content: list[Part] = [page_marker(1), TextPart("Text layer:\nCoffee 3.50\n")]
    with pytest.raises(ValueError, match="reads only"):
        TextLayerModel().generate(content, [spec.request(0.0)])


def test_concurrent_calls_are_all_recorded(made: Made) -> None:
    doc, truth = made["purchase_order"]
    spec = spec_for("extract", "purchase_order")
    model = TextLayerModel()
    errors: list[BaseException] = []

    def worker(page: int) -> None:
        try:
            for _ in range(5):
                reply = ask(model, doc, [page], spec)
                assert dumped(reply) == synth.truth_on_pages(truth, [page])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(page,)) for page in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(model.calls) == 40
    assert sorted(c.pages for c in model.calls) == [(p,) for p in range(1, 9) for _ in range(5)]


def test_runs_through_the_engine(made: Made) -> None:
    """analyze() with the double: every task validates, the extraction equals the truth."""
    doc, truth = made["bad_invoice"]
    settings = Settings(
        tasks=("extract", "summary", "ask"),
        schema_name="invoice",
        question="What is the invoice total?",
    )
    model = TextLayerModel()
    [envelope] = analyze([Path(doc.path)], settings, backend=model)
    assert envelope.status == "ok", envelope.errors
    assert envelope.extraction is not None and envelope.extraction.data == truth
    assert envelope.answer is not None and envelope.answer.data is not None
    assert envelope.answer.data.answer == truth["total"]["quote"]
    assert envelope.model is not None
    assert (envelope.model.backend, envelope.model.id) == ("textlayer", model.model_id)
    assert model.calls and all(c.pages == (1,) for c in model.calls)
