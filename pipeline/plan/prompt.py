"""The prompt layout, shared by the planner (to count) and the backends (to send).

Page content comes first and the task instruction last, so that several tasks on one document share
a prefix (one prefill in transformers, server prefix caching over HTTP)::

    system: SYSTEM_PROMPT
    user:   <document 1: name.pdf, 3 pages>\\n
            <page 1>\\n [image] text layer of page 1\\n
            <page 2>\\n [image] ...
            INSTRUCTION
    (re-ask) assistant: last reply / user: what was wrong

Every text piece ends with a newline and the next one starts with ``<`` or a letter, so the Qwen
pre-tokenizer splits at each boundary: token counts of the pieces add up exactly to the count of the
whole prompt (tested against the real processor).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL.Image import Image

SYSTEM_PROMPT = (
    "You are docvl, a careful document analyst. You read page images and their text layers and "
    "answer only from them. Cite pages by the number in their <page N> marker. "
    "Reply with JSON only."
)


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """A page image. ``image`` is filled in by the runner after rendering; planning leaves it
    None."""

    doc: int
    page: int
    height: int
    width: int
    image: Image | None = field(default=None, compare=False, repr=False)


Part = TextPart | ImagePart


@dataclass(frozen=True)
class Turn:
    """One re-ask round: the model's previous reply and the feedback on it."""

    reply: str
    feedback: str


def document_header(doc: int, name: str, total: int) -> TextPart:
    """Constant per document (the page markers say which pages follow), so its cost is fixed. A
    file name's bytes that are not UTF-8 become U+FFFD (a prompt is UTF-8 text)."""
    name = os.fsencode(name).decode("utf-8", errors="replace")
    return TextPart(f"<document {doc}: {name}, {total} pages>\n")


def page_marker(page: int) -> TextPart:
    return TextPart(f"<page {page}>\n")


def page_text(text: str, max_chars: int) -> TextPart | None:
    """The text layer after the image, or None when there is nothing to add."""
    text = text.strip()
    if not text or max_chars <= 0:
        return None
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + " [...]"
    return TextPart(f"Text layer:\n{text}\n")


def hf_messages(
    content: Sequence[Part], instruction: str, turns: Sequence[Turn] = ()
) -> list[dict[str, Any]]:
    """Messages in the transformers chat-template format (images as ``{"type": "image"}``)."""
    user: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            user.append({"type": "text", "text": part.text})
        else:
            entry: dict[str, Any] = {"type": "image"}
            if part.image is not None:
                entry["image"] = part.image
            user.append(entry)
    user.append({"type": "text", "text": instruction})
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": user},
    ]
    for turn in turns:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.reply}]})
        messages.append({"role": "user", "content": [{"type": "text", "text": turn.feedback}]})
    return messages


def images_of(content: Sequence[Part]) -> list[ImagePart]:
    return [p for p in content if isinstance(p, ImagePart)]


def pages_of(content: Sequence[Part]) -> list[int]:
    """The page numbers shown in ``content`` (the pages a reply may cite)."""
    return sorted({p.page for p in images_of(content)})
