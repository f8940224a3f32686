"""``docvl trigger DEPLOYMENT``: start a run of a served or deployed flow on the Prefect API server.

Needs ``PREFECT_API_URL`` pointing at a real server (``prefect server start``): an ephemeral server
lives inside one process, so another process's ``serve`` cannot see runs created against it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from docvl.pipeline.errors import UsageError

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


def parse_value(value: str) -> Any:
    """``--param k=v`` values: JSON when they parse (numbers, true/false, lists, objects), else the
    string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, recursively for mappings: ``settings={"model": "x"}`` keeps the
    deployment's other settings."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nest(params: dict[str, Any]) -> dict[str, Any]:
    """``--param settings.max_attempts=2`` as ``{"settings": {"max_attempts": 2}}``."""
    nested: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def run_url(flow_run_id: object) -> str:
    """Where to look at the run: the UI when the server has one, else the API."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    if ui:
        return f"{str(ui).rstrip('/')}/runs/flow-run/{flow_run_id}"
    return f"{str(PREFECT_API_URL.value()).rstrip('/')}/flow_runs/{flow_run_id}"


def trigger(
    deployment: str,
    params: dict[str, Any],
    wait: bool = False,
    *,
    timeout_s: float | None = None,
    poll_interval_s: float = 2.0,
) -> int:
    """Create a flow run of ``deployment`` ("flow-name/deployment-name") with ``params`` (dotted
    keys nest) deep-merged over the deployment's parameters, and print its URL. Without ``wait``
    returns 0 once the run is created. With ``wait`` polls until the run is final and prints its
    state and message (the inbox flow's picked/delivered/failed/retry counts): 0 when Completed, 1
    otherwise (Failed, e.g. a document failed; Crashed, Cancelled or timed out)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    if "/" not in deployment:
        raise UsageError(
            f"deployment must be 'flow-name/deployment-name' (e.g. docvl-inbox/docvl-inbox), got "
            f"{deployment!r}"
        )
    given = nest({k: parse_value(v) if isinstance(v, str) else v for k, v in params.items()})
    with get_client(sync_client=True) as client:
        defaults = client.read_deployment_by_name(deployment).parameters or {}
    flow_run = cast(
        "FlowRun",
        run_deployment(
            name=deployment,
            parameters=deep_merge(defaults, given),
            timeout=timeout_s if wait else 0,
            poll_interval=poll_interval_s,
        ),
    )
    print(f"flow run {flow_run.name} created for {deployment}: {run_url(flow_run.id)}")
    if not wait:
        return 0
    state = flow_run.state
    name = state.name if state else "unknown"
    message = f" ({state.message})" if state is not None and state.message else ""
    print(f"flow run {flow_run.name} finished: {name}{message}")
    return 0 if state is not None and state.is_completed() else 1
