"""The one exception of the contracts layer (``schemas`` imports nothing from ``pipeline``)."""


class SchemaError(ValueError):
    """Raised when a schema reference cannot be loaded: an unknown name, a missing module or class,
    or a JSON Schema file that is unreadable or uses a keyword docvl does not support.

    :func:`docvl.pipeline.tasks.specs.load_schema` turns it into ``SchemaNotFound`` (code
    ``schema_not_found``) of docvl's error hierarchy.
    """
