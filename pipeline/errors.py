"""The one error hierarchy of docvl.

Every failure a user can meet is a :class:`DocvlError` with a stable ``code``. Bad input never raises
out of the pipeline: it becomes an :class:`ErrorRecord` in the document's result, and the rest of the
batch goes on.

==========================  ======================  ==========================================
class                       code                    meaning
==========================  ======================  ==========================================
UnsupportedFormat           unsupported_format      content is not PDF, PPTX, PPT or an image
EmptyFile                   empty_file              zero bytes
CorruptDocument             corrupt_document        the parser cannot open or read the file
EmptyDocument               empty_document          the file opens but has 0 pages/slides
PasswordRequired            password_required       encrypted; no password given
WrongPassword               wrong_password          encrypted; the password did not authenticate
ConversionFailed            conversion_failed       LibreOffice failed or timed out on slides
RenderFailed                render_failed           a page could not be rasterized
DocumentTooLarge            document_too_large      a single page does not fit the context window
BackendUnavailable          backend_unavailable     weights missing, server unreachable
BackendError                backend_error           the model call failed (retryable)
ValidationFailed            validation_failed       no schema-valid reply after all re-asks
SchemaNotFound              schema_not_found        --schema names nothing loadable
UsageError                  usage_error             bad command-line or API arguments
==========================  ======================  ==========================================
"""

from __future__ import annotations

from pydantic import BaseModel


class ErrorRecord(BaseModel):
    """A typed, serialisable error: what goes into JSON instead of a traceback."""

    code: str
    message: str
    page: int | None = None


class DocvlError(Exception):
    code = "docvl_error"
    #: True when trying the same thing again may succeed (backend hiccups), never for bad input.
    retryable = False

    def __init__(self, message: str, *, page: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.page = page

    def record(self) -> ErrorRecord:
        return ErrorRecord(code=self.code, message=self.message, page=self.page)


class InputError(DocvlError):
    """The document itself is the problem. Never retried."""

    code = "input_error"


class UnsupportedFormat(InputError):
    code = "unsupported_format"


class EmptyFile(InputError):
    code = "empty_file"


class CorruptDocument(InputError):
    code = "corrupt_document"


class EmptyDocument(InputError):
    code = "empty_document"


class PasswordRequired(InputError):
    code = "password_required"


class WrongPassword(InputError):
    code = "wrong_password"


class ConversionFailed(InputError):
    code = "conversion_failed"


class RenderFailed(InputError):
    code = "render_failed"


class DocumentTooLarge(InputError):
    code = "document_too_large"


class BackendUnavailable(DocvlError):
    """The model cannot be reached or loaded at all (config problem: not retried)."""

    code = "backend_unavailable"


class BackendError(DocvlError):
    """A model call failed in a way that may pass on retry (timeouts, 429, 5xx)."""

    code = "backend_error"
    retryable = True


class ValidationFailed(DocvlError):
    code = "validation_failed"

    def __init__(self, message: str, *, raw: str, attempts: int, page: int | None = None) -> None:
        super().__init__(message, page=page)
        self.raw = raw
        self.attempts = attempts


class UsageError(DocvlError):
    code = "usage_error"


class SchemaNotFound(UsageError):
    code = "schema_not_found"
