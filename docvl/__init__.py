"""The CLI (``docvl``) and the Python API (:mod:`docvl.api`): the layer above ``flows``."""
