"""Task specifications: what each task asks the model, in which schema, with what output budget.

Instructions are deterministic functions of the settings (the planner counts their tokens before any
model call), start with a letter and end with a newline (see :mod:`docvl.pipeline.plan.prompt`).
Each one names the schema to fill, shows it as compact JSON Schema and asks for page citations from
the ``<page N>`` markers.

The planner gets them with ``[spec.instruction for spec in task_specs(settings)]``.

The schema a reply is decoded against is the user's, unbounded (``docvl.schemas.reply_schema``),
with the whole ``max_output_tokens`` as its budget; only ``Settings.decoder_bounds`` (random-weight
models and tests) swaps in the bounded ``docvl.schemas.decoder_schema`` and a budget derived from
its caps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from docvl.pipeline.errors import SchemaNotFound, UsageError
from docvl.pipeline.model.base import GenerationRequest
from docvl.pipeline.plan.prompt import Turn
from docvl.pipeline.settings import Settings, TaskName
from docvl.schemas import (
    Answer,
    DocumentSummary,
    bind_pages,
    decoder_schema,
    get_schema,
    max_reply_tokens,
    original_json_schema,
    reply_schema,
    schema_name,
    schema_version,
)
from docvl.schemas.errors import SchemaError

CITE = (
    "Cite pages by the number in their <page N> marker. Copy any quote verbatim from the page. "
    "Use null for what the pages do not show; never invent values."
)
JSON_ONLY = "Reply with one JSON object that follows this JSON Schema, and nothing else:"
#: A re-ask about some pages of a prompt that also shows the pages after them (where a record may
#: end): only the asked pages' records are wanted, so the reply is no longer than theirs.
ONLY_PAGES = (
    "In this reply, list only the records that begin on page(s) {pages}. Page(s) {context} are "
    "shown only so that a record that begins on an asked page and continues there is complete."
)


@dataclass(frozen=True)
class TaskSpec:
    name: TaskName
    #: The pydantic model replies are validated against.
    model: type[BaseModel]
    #: The full task instruction (goes last in the prompt).
    instruction: str
    #: JSON Schema for constrained decoding: the user's, unbounded (``docvl.schemas.reply_schema``),
    #: or with ``Settings.decoder_bounds`` the bounded ``docvl.schemas.decoder_schema``.
    json_schema: dict[str, Any] = field(repr=False)
    #: Output budget of one reply: ``Settings.max_output_tokens`` (with ``decoder_bounds``: at most
    #: that, less when the bounded schema allows no longer reply).
    max_new_tokens: int
    schema_name: str
    schema_version: str
    question: str | None = None

    def request(
        self, temperature: float, turns: Sequence[Turn] = (), pages: Sequence[int] = ()
    ) -> GenerationRequest:
        """The request for one attempt; ``pages`` (the pages in the prompt) bound the decoder's page
        fields."""
        return GenerationRequest(
            instruction=self.instruction,
            json_schema=bind_pages(self.json_schema, list(pages)),
            max_new_tokens=self.max_new_tokens,
            temperature=temperature,
            turns=tuple(turns),
        )


def only_pages(spec: TaskSpec, pages: Sequence[int], shown: Sequence[int]) -> TaskSpec:
    """``spec`` for a prompt showing ``shown`` in which only the records of ``pages`` are wanted
    (:data:`ONLY_PAGES` ends the instruction); ``spec`` itself when every shown page is asked."""
    context = [p for p in shown if p not in set(pages)]
    if not context:
        return spec
    line = ONLY_PAGES.format(pages=", ".join(map(str, pages)), context=", ".join(map(str, context)))
    return replace(spec, instruction=f"{spec.instruction}{line}\n")


def prompt_schema(model: type[BaseModel]) -> str:
    """The schema as shown to the model: compact, ``$defs`` kept, titles dropped. For a schema
    loaded from a JSON Schema file, the file as the user wrote it."""
    schema = original_json_schema(model) or model.model_json_schema()
    return json.dumps(_strip_titles(schema), separators=(",", ":"), ensure_ascii=False)


def _strip_titles(node: Any, in_properties: bool = False) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip_titles(v, k in ("properties", "$defs", "definitions"))
            for k, v in node.items()
            if in_properties or k != "title"
        }
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def summary_instruction() -> str:
    return (
        "Task: summarize the document(s) above into the DocumentSummary schema: a title, a "
        "faithful summary and up to 12 key points, each with the pages it comes from. "
        + CITE
        + "\n"
        + JSON_ONLY
        + "\n"
        + prompt_schema(DocumentSummary)
        + "\n"
    )


def ask_instruction(question: str) -> str:
    return (
        "Task: answer the question below from the document(s) above into the Answer schema. Put "
        'the pages the answer rests on in "pages" and up to 8 supporting quotes in "quotes". If '
        'the pages do not contain the answer, set "found" to false and say so in "answer". '
        + CITE
        + "\n"
        "Question: "
        + " ".join(question.split())
        + "\n"
        + JSON_ONLY
        + "\n"
        + prompt_schema(Answer)
        + "\n"
    )


def extract_instruction(name: str, model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split())
    about = f" ({doc})" if doc else ""
    return (
        f"Task: extract the data of the document(s) above into the {name!r} schema{about}. Give "
        "every record the page it was read from and, where possible, a short verbatim quote. List "
        "every record on the pages, in page order. "
        + CITE
        + "\n"
        + JSON_ONLY
        + "\n"
        + prompt_schema(model)
        + "\n"
    )


def make_spec(
    name: TaskName,
    model: type[BaseModel],
    instruction: str,
    settings: Settings,
    question: str | None = None,
) -> TaskSpec:
    if settings.decoder_bounds:
        schema = decoder_schema(model)
        budget = max_reply_tokens(schema, settings.max_output_tokens)
    else:
        schema, budget = reply_schema(model), settings.max_output_tokens
    return TaskSpec(
        name=name,
        model=model,
        instruction=instruction,
        json_schema=schema,
        max_new_tokens=budget,
        schema_name=schema_name(model),
        schema_version=schema_version(model),
        question=question,
    )


def load_schema(ref: str) -> type[BaseModel]:
    """The pydantic model a schema reference names (see :func:`docvl.schemas.get_schema`).

    Raises SchemaNotFound (the contracts layer's ``SchemaError`` as a docvl error).
    """
    try:
        return get_schema(ref)
    except SchemaError as exc:
        raise SchemaNotFound(str(exc)) from None


def task_specs(settings: Settings) -> list[TaskSpec]:
    """One spec per task in ``settings.tasks`` (in that order, duplicates dropped).

    Raises UsageError for ``ask`` without a question or ``extract`` without a schema, and
    SchemaNotFound for a schema that cannot be loaded.
    """
    if not settings.tasks:
        raise UsageError("no task given: use summary, ask and/or extract")
    specs: list[TaskSpec] = []
    for task in dict.fromkeys(settings.tasks):
        if task == "summary":
            specs.append(make_spec("summary", DocumentSummary, summary_instruction(), settings))
        elif task == "ask":
            question = (settings.question or "").strip()
            if not question:
                raise UsageError("the ask task needs a question (--question)")
            specs.append(
                make_spec("ask", Answer, ask_instruction(question), settings, question=question)
            )
        elif task == "extract":
            if not settings.schema_name:
                raise UsageError(
                    "the extract task needs a schema (--schema NAME, module:Class or file.json)"
                )
            model = load_schema(settings.schema_name)
            specs.append(
                make_spec(
                    "extract", model, extract_instruction(schema_name(model), model), settings
                )
            )
        else:  # pragma: no cover - TaskName is a Literal
            raise UsageError(f"unknown task {task!r}")
    return specs
