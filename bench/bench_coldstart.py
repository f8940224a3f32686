"""P8: cold-start overhead of ``docvl run`` on a one-page document vs bare imports, one run.

    .venv/bin/python bench/bench_coldstart.py [--model DIR] [--skip-local] [--skip-openai]

Side by side, each in a fresh process:
  * bare imports   ``python -c "import torch, transformers, prefect"``
  * cold run       ``docvl run samples/invoice.pdf --task extract --schema invoice --backend
                   transformers --model <tiny>`` with a new PREFECT_HOME (no PREFECT_API_URL: the
                   per-batch server of flows/server.py, started before the heavy imports) and an
                   empty cache; its model time (prefill + generate) is read from the envelope and
                   subtracted
  * local server   DOCVL_PREFECT_SERVER=local: the first cold run starts the reused Prefect server
                   (flows/localserver.py), a second cold run (new document cache) reuses it
  * rerun          the same command again on the filled cache: answered from the record store
                   without Prefect or torch (flows/rerun.py; target < 2 s)
  * home used      a cold run (new process, empty document cache) with the PREFECT_HOME of the
                   first: its database already migrated, as on every run after a user's first
  * openai         the cold runs again with ``--backend openai --model qwen/qwen3-vl-8b-instruct``
                   (an OpenRouter user's command) against ``docvl dev serve`` on the same tiny
                   checkpoint, started beforehand: a client that loads no model (no torch import)
Target: cold overhead (wall - model time) <= 1.5x the bare imports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from common import REPO, table

from docvl.flows.localserver import STATE_FILE, stop_local_server
from docvl.pipeline.settings import Settings

QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "DOCVL_DECODER_BOUNDS": "1",
    # a loaded machine needs more than flows' 60 s default to start the ephemeral server
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "900",
}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Wall seconds of ``cmd``; exit 1 (a failed document) is read from its output, anything else
    stops the benchmark with the command's last lines."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd[3:5]} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


#: The model id an OpenRouter user passes; ``docvl dev serve`` answers for any.
HUB_ID = "qwen/qwen3-vl-8b-instruct"


def docvl_cmd(backend: list[str], out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "docvl.cli",
        "run",
        "samples/invoice.pdf",
        "--task",
        "extract",
        "--schema",
        "invoice",
        *backend,
        "--out",
        str(out),
    ]


@contextlib.contextmanager
def dev_server(model: Path, env: dict[str, str]) -> Iterator[list[str]]:
    """``docvl dev serve`` on ``model`` at a free port, until the block ends; yields the
    ``--backend openai`` arguments that reach it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "docvl.cli", "dev", "serve", "--model", str(model)]
    server = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("docvl dev serve did not start")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1"
        yield ["--backend", "openai", "--base-url", url, "--model", HUB_ID]
    finally:
        server.terminate()
        server.wait(30)


def model_seconds(out: Path) -> float:
    record = json.loads(out.read_text().splitlines()[0])
    if record["status"] != "ok":
        raise SystemExit(f"the run's document failed: {record['errors']}")
    return float(record["timings"]["prefill"]) + float(record["timings"]["generate"])


def cold_row(
    label: str, backend: list[str], out: Path, env: dict[str, str], bare: float
) -> list[str]:
    """One cold run's row: wall, model time (the envelope's), overhead and its ratio to ``bare``."""
    wall = timed(docvl_cmd(backend, out), env)
    model_s = model_seconds(out)
    over = (wall - model_s) / bare
    return [label, f"{wall:.2f}", f"{model_s:.2f}", f"{wall - model_s:.2f}", f"{over:.2f}x"]


def run(model: Path, local: bool = True, openai: bool = True) -> str:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | QUIET
    base["PYTHONPATH"] = str(REPO)
    local_backend = ["--backend", "transformers", "--model", str(model)]
    rows = []
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        # Started first: its start is not the client's cost, and what it spends answering is in
        # the model time the envelope reports.
        remote = stack.enter_context(dev_server(model, base)) if openai else []
        bare = timed([sys.executable, "-c", "import torch, transformers, prefect"], base)
        rows.append(["bare `import torch, transformers, prefect`", f"{bare:.2f}", "", "", "1.00x"])

        env = base | {"PREFECT_HOME": str(root / "p1"), "DOCVL_CACHE_DIR": str(root / "c1")}
        out = root / "cold.jsonl"
        rows.append(cold_row("cold `docvl run` (per-batch server)", local_backend, out, env, bare))
        cold = rows[-1][4]

        rerun = timed(docvl_cmd(local_backend, root / "rerun.jsonl"), env)
        rows.append(
            ["rerun, same cache", f"{rerun:.2f}", "0", f"{rerun:.2f}", f"{rerun / bare:.2f}x"]
        )

        # Every run after a user's first: the same PREFECT_HOME (its database migrated), a new
        # process and an empty document cache.
        label = "cold `docvl run`, Prefect home used before"
        env_b = env | {"DOCVL_CACHE_DIR": str(root / "c1b")}
        rows.append(cold_row(label, local_backend, root / "warm-home.jsonl", env_b, bare))
        home = rows[-1][4]
        if openai:
            label = "cold `docvl run --backend openai`, Prefect home used before"
            env_b = env | {"DOCVL_CACHE_DIR": str(root / "c1o")}
            rows.append(cold_row(label, remote, root / "openai-home.jsonl", env_b, bare))

        # DOCVL_PREFECT_SERVER=local: the first run starts the reused server, the next reuse it.
        cache = root / "c2"
        env = base | {
            "PREFECT_HOME": str(root / "p2"),
            "DOCVL_CACHE_DIR": str(cache),
            "DOCVL_PREFECT_SERVER": "local",
        }
        runs = [
            ("cold `docvl run`, starts the local server", local_backend),
            ("cold `docvl run`, local server reused", local_backend),
        ]
        if openai:
            runs.append(("cold `docvl run --backend openai`, local server reused", remote))
        try:
            for label, backend in runs if local else []:
                for item in cache.glob("*"):  # a cold document, the server's state kept
                    if not item.name.startswith(STATE_FILE):
                        shutil.rmtree(item) if item.is_dir() else item.unlink()
                rows.append(cold_row(label, backend, root / "local.jsonl", env, bare))
        finally:
            stop_local_server(Settings(cache_dir=cache))
    return (
        "### P8: cold start of `docvl run` on a one-page document\n\n"
        + table(["run", "wall s", "model s", "overhead s", "overhead / bare imports"], rows)
        + f"\n\nCold overhead / bare imports: **{cold}** on a new Prefect home, "
        f"**{home}** on one used before (target <= 1.5); rerun "
        f"{rerun:.2f} s (target < 2 s). Load average before {' '.join(load_before)}, after "
        + " ".join(Path("/proc/loadavg").read_text().split()[:3])
        + "."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path)
    parser.add_argument(
        "--skip-local", action="store_true", help="no DOCVL_PREFECT_SERVER=local rows (shorter)"
    )
    parser.add_argument(
        "--skip-openai", action="store_true", help="no --backend openai rows (shorter)"
    )
    args = parser.parse_args()
    if args.model is None:
        from docvl.pipeline.dev.tiny import build_tiny_model

        args.model = Path(tempfile.mkdtemp(prefix="docvl-bench-tiny-"))
        build_tiny_model(args.model)
    print(run(args.model, local=not args.skip_local, openai=not args.skip_openai) + "\n")


if __name__ == "__main__":
    main()
