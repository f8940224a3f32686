"""docvl's library: ingest → plan → model → tasks → engine, over result, settings and errors.

The engine (:class:`docvl.pipeline.engine.Engine`) is the one analysis chain; the Prefect runner
lives in ``flows`` and the CLI and Python API in ``docvl`` (see the README's "How it works" table).
"""
