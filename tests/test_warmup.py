"""docvl.flows.warmup: the transformers backend's lazy imports done up front, on the calling
thread."""

from __future__ import annotations

import sys

from docvl.flows.warmup import TRANSFORMERS_MODULES, modules_for, preload
from docvl.pipeline.settings import Settings


def test_other_backends_import_nothing() -> None:
    assert modules_for(Settings(backend="scripted")) == ()
    assert preload(Settings(backend="scripted")) == []


def test_transformers_modules_are_imported() -> None:
    assert preload(Settings(backend="transformers")) == []
    for name in TRANSFORMERS_MODULES:
        assert name in sys.modules
    # the classes the backend names on its first call are then ready
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLForConditionalGeneration

    assert Qwen3VLForConditionalGeneration.__name__ == "Qwen3VLForConditionalGeneration"
