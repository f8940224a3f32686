"""The one analysis engine: prepare → windows → finish (see :mod:`docvl.pipeline.engine.core`).

The names below load on first use (PEP 562): importing a light submodule such as
:mod:`docvl.pipeline.engine.units` (record keys for ``docvl run``'s rerun check) must not pull in
the loaders, the planner and the model layer that :mod:`~docvl.pipeline.engine.core` imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docvl.pipeline.engine.core import Engine
    from docvl.pipeline.engine.prepare import Prepared
    from docvl.pipeline.engine.units import Unit, expand
    from docvl.pipeline.engine.windows import WindowResult

__all__ = ["Engine", "Prepared", "Unit", "WindowResult", "expand"]

_HOME = {
    "Engine": "core",
    "Prepared": "prepare",
    "Unit": "units",
    "WindowResult": "windows",
    "expand": "units",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
