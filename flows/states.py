"""The final state of a batch flow run and the envelopes it holds (Prefect states)."""

# No `from __future__ import annotations`: kept like docvl.flows.analyze, whose flows Prefect
# inspects.

from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from prefect import State
from prefect.states import Completed, Failed

from docvl.flows.options import RunOptions
from docvl.pipeline.result import ResultEnvelope


def final_state(envelopes: Sequence[ResultEnvelope], options: RunOptions, what: str) -> State[Any]:
    """The flow run's final state, holding the envelopes: Failed when a document failed (unless
    ``options.allow_partial``), so Prefect and ``docvl trigger --wait`` tell the truth."""
    failed = [env for env in envelopes if env.status == "failed"]
    ok = sum(env.status == "ok" for env in envelopes)
    message = f"{what}: {len(envelopes)} documents, {ok} ok, {len(failed)} failed"
    if failed:
        codes = Counter(env.errors[0].code if env.errors else "unknown" for env in failed)
        message += " (" + ", ".join(f"{code} x{n}" for code, n in codes.most_common()) + ")"
        if not options.allow_partial:
            return Failed(message=message, data=list(envelopes))
    return Completed(message=message, data=list(envelopes))


def envelopes_of(state: State[Any]) -> list[ResultEnvelope]:
    """The envelopes a finished batch flow run holds, whether it ended Completed or Failed; a
    crash (an exception, not documents that failed) is raised."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return cast("list[ResultEnvelope]", result)
