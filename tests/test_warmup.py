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


def test_a_backend_built_while_booting_is_taken_once_by_equal_settings() -> None:
    from docvl.flows.backend import LazyBackend, load_factory, take_prebuilt
    from docvl.flows.options import RunOptions
    from docvl.flows.warmup import build_while_booting

    settings = Settings(backend="scripted")
    build_while_booting(settings, RunOptions())
    assert take_prebuilt(settings.model_copy(update={"dpi": 99}), None) is None
    assert take_prebuilt(settings, "flowkit:scripted_backend") is None  # another factory
    built = take_prebuilt(settings, None)
    assert built is not None and take_prebuilt(settings, None) is None
    lazy = LazyBackend(settings, load_factory(None), built)
    assert lazy.get() is built


def test_an_untaken_backend_is_closed_and_a_failing_one_left_to_the_flow() -> None:
    from docvl.flows.backend import discard_prebuilt, take_prebuilt
    from docvl.flows.options import RunOptions
    from docvl.flows.warmup import build_while_booting

    settings = Settings(backend="scripted")
    build_while_booting(settings, RunOptions(backend_factory="flowkit:configured_backend"))
    assert take_prebuilt(settings, "flowkit:configured_backend") is None  # raised: not kept
    closed: list[bool] = []
    build_while_booting(settings, RunOptions())
    backend = take_prebuilt(settings, None)
    assert backend is not None
    from docvl.flows import backend as backend_module

    backend.close = lambda: closed.append(True)  # type: ignore[method-assign]
    backend_module._PREBUILT.append((settings, None, backend))
    discard_prebuilt()
    assert closed == [True] and take_prebuilt(settings, None) is None
