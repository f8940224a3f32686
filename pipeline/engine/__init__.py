"""The one analysis engine: prepare → windows → finish (see :mod:`pipeline.engine.core`)."""

from pipeline.engine.core import Engine, expand
from pipeline.engine.prepare import Prepared, Unit
from pipeline.engine.windows import WindowResult

__all__ = ["Engine", "Prepared", "Unit", "WindowResult", "expand"]
