"""``docvl trigger DEPLOYMENT``: start a run of a served or deployed flow on the Prefect API server.

Needs ``PREFECT_API_URL`` pointing at a real server (``prefect server start``): an ephemeral server
lives inside one process, so another process's ``serve`` cannot see runs created against it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, cast

from pipeline.errors import UsageError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

log = logging.getLogger(__name__)


def parse_value(value: str) -> Any:
    """``--param k=v`` values: JSON when they parse (numbers, true/false, lists, objects), else the
    string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def trigger(
    deployment: str,
    params: dict[str, Any],
    wait: bool = False,
    *,
    timeout_s: float | None = None,
    poll_interval_s: float = 2.0,
) -> int:
    """Create a flow run of ``deployment`` ("flow-name/deployment-name") with ``params`` merged over
    the deployment's parameters. Without ``wait`` returns 0 once the run is created. With ``wait``
    polls until the run is final: 0 when Completed, 1 otherwise (Failed, Crashed, Cancelled or timed
    out)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    if "/" not in deployment:
        raise UsageError(
            f"deployment must be 'flow-name/deployment-name' (e.g. docvl-inbox/docvl-inbox), got "
            f"{deployment!r}"
        )
    if not PREFECT_API_URL.value():
        log.warning(
            "PREFECT_API_URL is not set: triggering against an ephemeral server that no worker "
            "watches"
        )
    parameters = {k: parse_value(v) if isinstance(v, str) else v for k, v in params.items()}
    flow_run = cast(
        "FlowRun",
        run_deployment(
            name=deployment,
            parameters=parameters or None,
            timeout=timeout_s if wait else 0,
            poll_interval=poll_interval_s,
        ),
    )
    print(f"flow run {flow_run.name} ({flow_run.id}) created for {deployment}")
    if not wait:
        return 0
    state = flow_run.state
    name = state.name if state else "unknown"
    print(f"flow run {flow_run.name} finished: {name}")
    return 0 if state is not None and state.is_completed() else 1
