"""The one analysis engine: prepare → windows → finish (see :mod:`docvl.pipeline.engine.core`)."""

from docvl.pipeline.engine.core import Engine, expand
from docvl.pipeline.engine.prepare import Prepared, Unit
from docvl.pipeline.engine.windows import WindowResult

__all__ = ["Engine", "Prepared", "Unit", "WindowResult", "expand"]
