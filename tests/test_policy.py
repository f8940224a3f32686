"""The one failure-policy table (pipeline/policy.py)."""

from __future__ import annotations

from docvl.pipeline import errors
from docvl.pipeline.errors import ErrorRecord
from docvl.pipeline.policy import (
    FAILURE_POLICY,
    Policy,
    is_final,
    policy_of,
    retried_in_run,
    stops_batch,
)


def test_the_policy_table_covers_every_error_class() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.DocvlError) and c is not errors.DocvlError
    ]
    assert {c.code for c in classes} <= set(FAILURE_POLICY)
    assert policy_of("corrupt_document") is Policy.FINAL
    assert policy_of("backend_error") is Policy.RETRYABLE and retried_in_run("backend_error")
    assert policy_of("backend_unavailable") is Policy.RETRYABLE
    assert not retried_in_run("backend_unavailable")
    assert (
        policy_of("internal_error") is Policy.INTERNAL
        and policy_of("no_such_code") is Policy.INTERNAL
    )


def test_bad_requests_and_timeouts_are_not_retried_in_the_run_nor_cached() -> None:
    for code in ("backend_rejected", "backend_timeout"):
        assert not retried_in_run(code)
        assert not is_final([ErrorRecord(code=code, message="x")])


def test_only_configuration_failures_stop_the_batch() -> None:
    assert stops_batch("backend_unavailable")
    assert not any(stops_batch(c) for c in FAILURE_POLICY if c != "backend_unavailable")


def test_a_result_is_final_only_when_every_error_is() -> None:
    final = ErrorRecord(code="corrupt_document", message="x")
    assert is_final([]) and is_final([final])
    assert not is_final([final, ErrorRecord(code="internal_error", message="bug")])
