"""The one error hierarchy of docvl.

Every failure a user can meet is a :class:`DocvlError` with a stable ``code``. Bad input never
raises out of the pipeline: it becomes an :class:`ErrorRecord` in the document's result, and the
rest of the batch goes on.

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
BackendRejected             backend_rejected        the server refused the request (HTTP 400/422)
BackendTimeout              backend_timeout         no answer within the request deadline
ValidationFailed            validation_failed       no schema-valid reply after all re-asks
SchemaNotFound              schema_not_found        --schema names nothing loadable
ReplyTooLong                reply_too_long          a reply hit its token limit (window split)
OutputTooLarge              output_too_large        one page's reply exceeds every output budget
UsageError                  usage_error             bad command-line or API arguments
NotAttempted                not_attempted           skipped: the batch hit ``--max-failures``
InternalError               internal_error          a bug in docvl (reported, never final)
FileTooLarge                file_too_large          the file exceeds ``max_file_bytes``
TooManyPages                too_many_pages          more pages/slides/frames than ``max_pages``
TooManyPixels               too_many_pixels         images declare more than ``max_page_pixels``
PackageTooLarge             package_too_large       a deck unpacks past ``max_unpacked_bytes``
ConversionTimeout           conversion_timeout      LibreOffice ran past ``slide_timeout_s``
ConversionOutOfMemory       conversion_memory       LibreOffice died under ``slide_memory_mb``
DocumentTimeout             document_timeout        over ``document_timeout_s`` of wall time
MemoryBudgetExceeded        memory_budget           the run went over ``memory_budget_mb``
WorkAbandoned               work_abandoned          leftover work of a timed-out document
==========================  ======================  ==========================================

What a runner does with each error code (final, retryable or internal) is declared once, in
:data:`docvl.pipeline.policy.FAILURE_POLICY`.
"""

from __future__ import annotations

from pydantic import BaseModel

#: The most of a model's reply an error record keeps (UTF-8 bytes).
RAW_REPLY_LIMIT = 64 * 1024


class ErrorRecord(BaseModel):
    """A typed, serialisable error: what goes into JSON instead of a traceback."""

    code: str
    message: str
    page: int | None = None
    #: A reply that failed to parse or to validate (after every re-ask), or was cut off: the model's
    #: last reply as it came, at most :data:`RAW_REPLY_LIMIT` bytes of it, so a user can see what
    #: the model said. None for other errors.
    raw_reply: str | None = None
    #: True when ``raw_reply`` is only the start of the reply (it was longer than the limit).
    raw_reply_truncated: bool = False


class DocvlError(Exception):
    """Base of every docvl error. Raised by the stages; runners turn it into an
    :class:`ErrorRecord`."""

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
    """Raised by sniffing when the bytes are not a PDF, PPTX, PPT or an image."""

    code = "unsupported_format"


class EmptyFile(InputError):
    """Raised by loading for a file of zero bytes."""

    code = "empty_file"


class CorruptDocument(InputError):
    """Raised by loading when the parser cannot open or read the file."""

    code = "corrupt_document"


class EmptyDocument(InputError):
    """Raised by loading when the file opens but has no pages or slides."""

    code = "empty_document"


class PasswordRequired(InputError):
    """Raised by loading for an encrypted PDF when no password was given."""

    code = "password_required"


class WrongPassword(InputError):
    """Raised by loading when the given password does not open the PDF."""

    code = "wrong_password"


class ConversionFailed(InputError):
    """Raised by slide loading when LibreOffice fails or times out."""

    code = "conversion_failed"


class RenderFailed(InputError):
    """Raised by rendering when the renderer rejects a page of the document."""

    code = "render_failed"


class DocumentTooLarge(InputError):
    """Raised by packing when a single page does not fit an empty window."""

    code = "document_too_large"


class BackendUnavailable(DocvlError):
    """Raised by a backend when the model cannot be reached or loaded at all (weights missing,
    server down, HTTP 401/404): a configuration problem, not retried in the run, never final."""

    code = "backend_unavailable"


class BackendError(DocvlError):
    """Raised by a backend when a call failed in a way that may pass on retry (timeouts, 429,
    5xx)."""

    code = "backend_error"
    retryable = True


class BackendRejected(DocvlError):
    """Raised by a backend when the server refused the request itself (HTTP 400, 422: a prompt
    over the server's context, an unsupported field). Asking again unchanged fails the same way, so
    it is not retried in the run; it is never cached either (a server setting may change)."""

    code = "backend_rejected"


class BackendTimeout(BackendError):
    """Raised by the OpenAI-compatible backend when a request got no answer within
    ``Settings.request_deadline_s`` (the SDK's retries on timeouts included): the server hangs.
    Not retried in the run, so that one setting bounds the time a window spends on a hung server;
    never cached (the next run asks again)."""

    code = "backend_timeout"
    retryable = False


class ValidationFailed(DocvlError):
    """Raised by the re-ask loop when no reply validated against the schema."""

    code = "validation_failed"

    def __init__(self, message: str, *, raw: str, attempts: int, page: int | None = None) -> None:
        super().__init__(message, page=page)
        self.raw = raw
        self.attempts = attempts

    def record(self) -> ErrorRecord:
        """The record, with the last reply (bounded: :data:`RAW_REPLY_LIMIT`)."""
        kept = self.raw.encode("utf-8", errors="replace")
        cut = len(kept) > RAW_REPLY_LIMIT
        raw = kept[:RAW_REPLY_LIMIT].decode("utf-8", errors="ignore") if cut else self.raw
        return ErrorRecord(
            code=self.code,
            message=self.message,
            page=self.page,
            raw_reply=raw,
            raw_reply_truncated=cut,
        )


class ReplyTooLong(ValidationFailed):
    """Raised by the re-ask loop when a reply hit its token limit (``finish_reason: length``) or
    fell into a repetition loop: the same request would fail the same way, so the engine splits
    the window's pages instead of asking again."""

    code = "reply_too_long"


class OutputTooLarge(InputError):
    """Raised by the engine when one page's reply does not fit even the largest output budget the
    context leaves: the hard stop of splitting a window."""

    code = "output_too_large"


class UsageError(DocvlError):
    """Raised before any slow work for bad command-line or API arguments (exit code 2)."""

    code = "usage_error"


class SchemaNotFound(UsageError):
    """Raised when ``--schema`` names no built-in schema, module:Class or JSON Schema file."""

    code = "schema_not_found"


class NotAttempted(DocvlError):
    """Recorded for a document the runner never started because the batch had already failed
    ``--max-failures`` documents. Never cached: the next run attempts it."""

    code = "not_attempted"


class InternalError(DocvlError):
    """A bug in docvl (an unexpected exception in a stage). Reported, never cached as final."""

    code = "internal_error"


# --- ingest budgets and caps (issue 9): each a final input error ----------------------------------


class FileTooLarge(InputError):
    """Raised by loading when the file is larger than ``Settings.max_file_bytes``."""

    code = "file_too_large"


class TooManyPages(InputError):
    """Raised by loading when a document declares more pages (slides, image frames) than
    ``Settings.max_pages``, before any page is read."""

    code = "too_many_pages"


class TooManyPixels(InputError):
    """Raised before decoding when an image (a file, a picture of a deck, or the images drawn on one
    PDF page together) declares more pixels than ``Settings.max_page_pixels``: a pixel bomb."""

    code = "too_many_pixels"


class PackageTooLarge(InputError):
    """Raised before conversion when a deck's zip parts unpack to more than
    ``Settings.max_unpacked_bytes`` (a zip bomb)."""

    code = "package_too_large"


class ConversionTimeout(ConversionFailed):
    """Raised when LibreOffice runs past ``Settings.slide_timeout_s`` (its process group is
    killed)."""

    code = "conversion_timeout"


class ConversionOutOfMemory(ConversionFailed):
    """Raised when LibreOffice dies under its address-space limit ``Settings.slide_memory_mb``."""

    code = "conversion_memory"


# --- runtime budgets (issue 9, runtime side) ------------------------------------------------------
class DocumentTimeout(InputError):
    """Recorded by the flows when one document's analysis runs past ``document_timeout_s``: the
    same document with the same settings would take as long again, so the record is final."""

    code = "document_timeout"


class MemoryBudgetExceeded(InputError):
    """Recorded by the flows for the document(s) in progress when the run's process tree (docvl,
    its render workers, LibreOffice) goes over ``Settings.memory_budget_mb`` of resident memory
    (:mod:`docvl.flows.memory`): a memory bomb. Final under that budget (a run with a larger
    budget computes the document again)."""

    code = "memory_budget"


class WorkAbandoned(DocvlError):
    """Raised by the flows inside a document's work once that document is past its time budget
    (its record already says ``document_timeout``): the leftover work stops at its next model call.
    Never cached, never retried in the run; it never reaches a record."""

    code = "work_abandoned"
