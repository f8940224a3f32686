"""docvl's pipeline: sniff → load → render → plan/pack → backend → tasks → result.

The Python API lives in :mod:`docvl.api`.
"""
