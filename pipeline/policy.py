"""The one failure-policy table: what every runner does with each error code.

=========  ==========================================================================
policy     meaning
=========  ==========================================================================
final      bad input or a settled outcome: the record is cached; a rerun cannot change it
retryable  the backend failed: never cached; retried within the run only when the error's
           class says ``retryable`` (:func:`retried_in_run`: BackendError; not a timeout
           against a hung server, nor a request the server rejected)
internal   a bug: reported, never retried, never cached; an unknown code is treated as one
=========  ==========================================================================

Configuration failures (:data:`CONFIGURATION_CODES`: a wrong URL, a bad key, missing weights) stop
the batch early, since every other document would fail the same way (:func:`stops_batch`).
"""

from __future__ import annotations

from enum import StrEnum

from docvl.pipeline.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ConversionFailed,
    ConversionOutOfMemory,
    ConversionTimeout,
    CorruptDocument,
    DocumentTimeout,
    DocumentTooLarge,
    DocvlError,
    EmptyDocument,
    EmptyFile,
    ErrorRecord,
    FileTooLarge,
    InputError,
    InternalError,
    MemoryBudgetExceeded,
    NotAttempted,
    OutputTooLarge,
    PackageTooLarge,
    PasswordRequired,
    RenderFailed,
    ReplyTooLong,
    SchemaNotFound,
    TooManyPages,
    TooManyPixels,
    UnsupportedFormat,
    UsageError,
    ValidationFailed,
    WorkAbandoned,
    WrongPassword,
)

#: Codes that mean the setup is wrong (credentials, URL, weights), not the document: every other
#: document of the batch would fail the same way, so a runner stops the batch early.
CONFIGURATION_CODES: frozenset[str] = frozenset({BackendUnavailable.code})


def stops_batch(code: str) -> bool:
    """True for a configuration failure (:data:`CONFIGURATION_CODES`): stop the batch early."""
    return code in CONFIGURATION_CODES


class Policy(StrEnum):
    #: Bad input or a settled outcome: the record is final and cached; rerunning cannot change it.
    FINAL = "final"
    #: The backend failed: never cached, so the next run tries again. Errors whose class says
    #: ``retryable`` (BackendError) are also retried within the run (``RunOptions.retries``);
    #: BackendUnavailable (weights missing, server down) is not: the setup must change first.
    RETRYABLE = "retryable"
    #: A bug: reported, never retried, never cached.
    INTERNAL = "internal"


#: The one failure-policy table: what every runner does with each error code.
FAILURE_POLICY: dict[str, Policy] = {
    **{
        cls.code: Policy.FINAL
        for cls in (
            UnsupportedFormat,
            EmptyFile,
            CorruptDocument,
            EmptyDocument,
            PasswordRequired,
            WrongPassword,
            ConversionFailed,
            RenderFailed,
            DocumentTooLarge,
            OutputTooLarge,
            InputError,
            ValidationFailed,
            ReplyTooLong,
            UsageError,
            SchemaNotFound,
            # ingest budgets and caps (issue 9)
            FileTooLarge,
            TooManyPages,
            TooManyPixels,
            PackageTooLarge,
            ConversionTimeout,
            ConversionOutOfMemory,
            DocumentTimeout,
            MemoryBudgetExceeded,
        )
    },
    BackendError.code: Policy.RETRYABLE,
    BackendRejected.code: Policy.RETRYABLE,
    BackendTimeout.code: Policy.RETRYABLE,
    BackendUnavailable.code: Policy.RETRYABLE,
    NotAttempted.code: Policy.RETRYABLE,
    WorkAbandoned.code: Policy.RETRYABLE,
    InternalError.code: Policy.INTERNAL,
}


def policy_of(code: str) -> Policy:
    """The policy for an error code; an unknown code is treated as a bug (never final)."""
    return FAILURE_POLICY.get(code, Policy.INTERNAL)


def is_final(records: list[ErrorRecord]) -> bool:
    """True when none of ``records`` could change on a rerun (so a result holding them may be
    cached)."""
    return all(policy_of(r.code) is Policy.FINAL for r in records)


def retried_in_run(code: str) -> bool:
    """True for the codes a runner retries within the run (``DocvlError.retryable``:
    BackendError)."""
    stack: list[type[DocvlError]] = [DocvlError]
    while stack:
        cls = stack.pop()
        if cls.code == code:
            return cls.retryable
        stack.extend(cls.__subclasses__())
    return False
