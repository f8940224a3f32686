"""Prefect orchestration of the docvl pipeline. Orchestration only: business logic lives in
``pipeline``.

Importing this package sets the offline defaults Prefect needs on air-gapped machines (the one place
they are set). Explicit environment values always win (``setdefault``).
"""

from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # 2-core machines with a fresh SQLite database need more than the default to start the
    # ephemeral API server.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
}


def apply_offline_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Fill the offline defaults into ``env`` (``os.environ`` by default) and return it.

    Also: flow- and task-run logs reach the Prefect API at INFO whatever the console shows (served
    runs tell the server what was picked up, delivered or failed), while the console handler keeps
    ``PREFECT_LOGGING_LEVEL`` (the CLI's default WARNING keeps progress bars clean).
    """
    target: dict[str, str] = os.environ if env is None else env  # type: ignore[assignment]
    for key, value in OFFLINE_ENV.items():
        target.setdefault(key, value)
    target.setdefault(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", target.get("PREFECT_LOGGING_LEVEL", "INFO")
    )
    for logger in ("FLOW_RUNS", "TASK_RUNS"):
        target.setdefault(f"PREFECT_LOGGING_LOGGERS_PREFECT_{logger}_LEVEL", "INFO")
    return target


apply_offline_env()
