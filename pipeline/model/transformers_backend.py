"""In-process Qwen3-VL with transformers: one prefill of the page content for several requests.

How one prefill serves several requests (and re-asks on the same content):

1. The images go through the image processor and the vision encoder in bounded chunks
   (:meth:`TransformersBackend.encode_images`): a window's ``pixel_values`` never exist at once,
   only the encoder's outputs and ``image_grid_thw``. The content rendered with an empty
   instruction (the *probe*) gives the shared token ids.
2. Each request's full prompt is rendered as text, its ``<|image_pad|>`` placeholders are expanded
   with the grid (exactly what the processor does) and tokenized: no image is processed twice.
3. The shared prefix is the longest common token prefix of the probe and every request (system +
   content; the instruction starts after it). It runs through the model ONCE, with the encoded
   images (``mm_encoder_outputs``), into a ``DynamicCache``. That forward also sets the model's
   M-RoPE ``rope_deltas`` (text positions after the images are shifted by it), which are stored
   with the cache.
4. Each request is decoded by :func:`docvl.pipeline.model.decoding.decode` (``generate``'s greedy
   and sampling steps without its per-token bookkeeping) from the prefix cache: it prefills only
   the uncached suffix, and since the suffix holds no vision tokens, Qwen3-VL computes its
   positions from the stored ``rope_deltas``. Afterwards the cache is cropped back to the prefix,
   ready for the next request. The last prefix stays cached (keyed by the content, image
   bytes included), so a re-ask on the same content skips the image processing and the prefill too.

Greedy outputs are identical to an uncached ``generate`` (tests/test_backends_transformers.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from docvl.pipeline.errors import BackendUnavailable, UsageError
from docvl.pipeline.model.base import FinishReason, Generation, GenerationRequest
from docvl.pipeline.model.constrain import JsonConstrainer
from docvl.pipeline.model.decoding import (
    LogprobRecorder,
    Prefix,
    common_prefix_len,
    content_key,
    decode,
)
from docvl.pipeline.model.qwen import (
    apply_chat_template,
    eos_token_ids,
    load_processor,
    resolve_model_dir,
)
from docvl.pipeline.model.vision import encode_images, page_images
from docvl.pipeline.plan.prompt import Part, hf_messages
from docvl.pipeline.settings import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)

#: Qwen3-VL-Instruct model card sampling (used when temperature > 0).
TOP_P = 0.8
TOP_K = 20
_HELP = (
    "Download the weights on a machine with hub access "
    "(`huggingface-cli download Qwen/Qwen3-VL-8B-Instruct --local-dir DIR`) and pass "
    "`--model DIR`; or use a served model with `--backend openai --base-url URL`; "
    "or build a tiny random model for a smoke test with `docvl dev tiny-model DIR`."
)


class TransformersBackend:
    """Qwen3-VL on local weights. Thread-safe (one generate at a time)."""

    name = "transformers"

    def __init__(
        self, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: Any = None
    ) -> None:
        import torch
        from transformers import Qwen3VLForConditionalGeneration

        self.model_id = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_cuda = self.device.startswith("cuda")
        self.dtype = dtype or (torch.bfloat16 if on_cuda else torch.float32)
        attn = "flash_attention_2" if on_cuda and importlib.util.find_spec("flash_attn") else "sdpa"
        model_dir = resolve_model_dir(model)
        if model_dir is None and not os.environ.get("HF_HUB_OFFLINE"):
            # A hub id not on disk yet: fetch it once (weights only; no document leaves this
            # machine).
            log.warning(
                "%s is not on disk: downloading it from the Hugging Face hub "
                "(the 8B model is 17.5 GB); set HF_HUB_OFFLINE=1 to never download",
                model,
            )
            model_dir = resolve_model_dir(model, local_files_only=False)
        self.processor = load_processor(model, local_files_only=True)
        try:
            loaded: Any = Qwen3VLForConditionalGeneration.from_pretrained(
                str(model_dir), dtype=self.dtype, attn_implementation=attn, local_files_only=True
            )
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"Cannot load the weights of {model!r} from {model_dir}: {exc}. {_HELP}"
            ) from exc
        self.model: Any = loaded.to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.eos_ids = eos_token_ids(self.tokenizer)
        self.image_pad = str(self.processor.image_token)
        self.merge = int(self.processor.image_processor.merge_size)
        self._constrainer: Any = None
        self._prefix: Prefix | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersBackend:
        return cls(settings.model, device=settings.device)

    # --- inputs -------------------------------------------------------------------------------
    def render(self, content: Sequence[Part], request: GenerationRequest) -> str:
        return apply_chat_template(
            self.processor, hf_messages(content, request.instruction, request.turns)
        )

    def _tokenize(self, text: str, image_grid_thw: Any) -> list[int]:
        """Token ids of a rendered prompt with each image pad expanded (the processor's own
        rule)."""
        pieces = text.split(self.image_pad)
        counts = (
            [int(g.prod()) // self.merge**2 for g in image_grid_thw]
            if image_grid_thw is not None
            else []
        )
        if len(pieces) - 1 != len(counts):
            raise UsageError(
                f"prompt has {len(pieces) - 1} image placeholders for {len(counts)} images"
            )
        expanded = pieces[0] + "".join(
            self.image_pad * n + rest for n, rest in zip(counts, pieces[1:], strict=True)
        )
        return list(self.tokenizer(expanded, add_special_tokens=False)["input_ids"])

    def processor_inputs(self, content: Sequence[Part], request: GenerationRequest) -> Any:
        """The processor's own output for a full prompt (what an uncached ``generate`` gets)."""
        images = page_images(content)
        return self.processor(
            text=[self.render(content, request)], images=images or None, return_tensors="pt"
        )

    # --- prefix cache -------------------------------------------------------------------------
    def _build_prefix(
        self, key: str, content: Sequence[Part], prompts: Sequence[str]
    ) -> tuple[Prefix, float]:
        import torch
        from transformers import DynamicCache

        self._prefix = None  # free the old cache first
        start = time.perf_counter()
        grid, encoded = self.encode_images(page_images(content))
        probe_text = self.render(content, GenerationRequest(instruction=""))
        probe_ids = self._tokenize(probe_text, grid)
        n = len(probe_ids)
        for text in prompts:
            ids = self._tokenize(text, grid)
            n = min(n, common_prefix_len(probe_ids, ids), len(ids) - 1)
        ids_t = torch.tensor([probe_ids[:n]], dtype=torch.long, device=self.device)
        cache = DynamicCache(config=self.model.config)
        mm = self.processor.create_mm_token_type_ids([probe_ids[:n]])
        kwargs: dict[str, Any] = {
            "mm_token_type_ids": torch.tensor(mm, dtype=torch.long, device=self.device)
        }
        if grid is not None:
            kwargs["mm_encoder_outputs"] = {"image": encoded}
            kwargs["image_grid_thw"] = grid.to(self.device)
        self.model.model.rope_deltas = None
        with torch.inference_mode():
            self.model(
                input_ids=ids_t,
                attention_mask=torch.ones_like(ids_t),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )
        rope_deltas = self.model.model.rope_deltas
        if rope_deltas is None:  # text only: positions are plain
            rope_deltas = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        prefix = Prefix(key, probe_ids[:n], cache, rope_deltas, grid)
        self._prefix = prefix
        return prefix, time.perf_counter() - start

    def _rewind(self, prefix: Prefix) -> None:
        extra = prefix.cache.get_seq_length() - len(prefix.ids)
        if extra > 0:
            prefix.cache.crop(-extra)

    def encode_images(self, images: Sequence[Any]) -> tuple[Any, Any]:
        """``(image_grid_thw, vision encoder outputs)`` for ``images`` (see
        :func:`docvl.pipeline.model.vision.encode_images`)."""
        return encode_images(self.processor, self.model, self.device, self.dtype, images)

    # --- generation ---------------------------------------------------------------------------
    def generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        if not requests:
            return []
        with self._lock:
            return self._generate(content, requests)

    def _generate(
        self, content: Sequence[Part], requests: Sequence[GenerationRequest]
    ) -> list[Generation]:
        key = content_key(content)
        prompts = [self.render(content, r) for r in requests]
        prefix = self._prefix if self._prefix is not None and self._prefix.key == key else None
        fresh_s = 0.0
        all_ids: list[list[int]] = []
        if prefix is not None:
            all_ids = [self._tokenize(p, prefix.image_grid_thw) for p in prompts]
            n = len(prefix.ids)
            if any(len(ids) <= n or ids[:n] != prefix.ids for ids in all_ids):
                prefix = None
        reused = prefix is not None
        if prefix is None:
            prefix, fresh_s = self._build_prefix(key, content, prompts)
            all_ids = [self._tokenize(p, prefix.image_grid_thw) for p in prompts]
        results = []
        for i, (request, ids) in enumerate(zip(requests, all_ids, strict=True)):
            cached = len(prefix.ids) if reused or i > 0 else 0
            prefill_s = fresh_s if i == 0 else 0.0
            results.append(self._generate_one(prefix, request, ids, cached, prefill_s))
        return results

    def _generate_one(
        self,
        prefix: Prefix,
        request: GenerationRequest,
        ids: list[int],
        cached: int,
        prefill_s: float,
    ) -> Generation:
        import torch

        processors: list[Any] = []
        if request.json_schema is not None:
            processors.append(self.constrainer().processor(request.json_schema))
        recorder = LogprobRecorder()
        processors.append(recorder)  # after the mask: it sees the constrained scores
        sample = request.temperature > 0
        if sample:  # generate's sampling warpers, in its order
            from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

            if request.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(request.temperature))
            processors += [TopKLogitsWarper(top_k=TOP_K), TopPLogitsWarper(top_p=TOP_P)]
        start = time.perf_counter()
        try:
            self.model.model.rope_deltas = prefix.rope_deltas
            with torch.inference_mode():
                new = decode(
                    self.model,
                    prefix.cache,
                    ids,
                    processors,
                    max_new_tokens=request.max_new_tokens,
                    eos_ids=self.eos_ids,
                    sample=sample,
                )
        finally:
            self._rewind(prefix)
        decode_s = time.perf_counter() - start
        logprobs = recorder.finish(new[-1]) if new else []
        finish: FinishReason = "length"
        if new and new[-1] in self.eos_ids:
            new, finish = new[:-1], "stop"
        text = self.tokenizer.decode(
            new, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return Generation(
            text=text,
            finish_reason=finish,
            input_tokens=len(ids),
            output_tokens=len(new),
            cached_tokens=cached,
            timings={"prefill_s": prefill_s, "decode_s": decode_s},
            token_logprobs=tuple(zip(self._pieces(new), logprobs[: len(new)], strict=True)),
        )

    def _pieces(self, ids: list[int]) -> list[str]:
        """Each token's text piece; the pieces join to the decoded text. A character split over
        several tokens goes to the token that completes it (the others get ``""``)."""
        pieces: list[str] = []
        pending: list[int] = []
        for token in ids:
            pending.append(token)
            piece = self.tokenizer.decode(
                pending, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            if piece.endswith("\ufffd") and len(pending) < 4:  # an incomplete UTF-8 sequence
                pieces.append("")
                continue
            pieces.append(piece)
            pending = []
        if pending:  # cut off inside a character: what the full decode shows for it
            pieces[-1] = self.tokenizer.decode(
                pending, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        return pieces

    def constrainer(self) -> Any:
        if self._constrainer is None:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
            self._constrainer = JsonConstrainer(self.tokenizer, self.eos_ids, vocab_size=vocab)
        return self._constrainer

    def close(self) -> None:
        self._prefix = None
        self.model = None
