"""P8: cold-start overhead of ``docvl run`` on a one-page document vs bare imports, one run.

    .venv/bin/python bench/bench_coldstart.py [--model DIR] [--rounds 1]

Side by side, each in a fresh process:
  * bare imports   ``python -c "import torch, transformers, prefect"``
  * cold run       ``docvl run samples/invoice.pdf --task extract --schema invoice --backend
                   transformers --model <tiny>`` with a new PREFECT_HOME (no PREFECT_API_URL: the
                   ephemeral server) and an empty cache; its model time (prefill + generate) is read
                   from the envelope and subtracted
  * with a server  the same cold run with PREFECT_API_URL pointing at a ``prefect server start``
                   already running (started, and stopped, by this script; not timed)
  * rerun          the same command again on the filled cache (target < 2 s)
Target: cold overhead (wall - model time) <= 1.5x the bare imports.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import REPO, table

QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "DOCVL_DECODER_BOUNDS": "1",
}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def docvl_cmd(model: Path, out: Path) -> list[str]:
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
        "--backend",
        "transformers",
        "--model",
        str(model),
        "--out",
        str(out),
    ]


def model_seconds(out: Path) -> float:
    record = json.loads(out.read_text().splitlines()[0])
    if record["status"] != "ok":
        raise SystemExit(f"cold run failed: {record['errors']}")
    return float(record["timings"]["prefill"]) + float(record["timings"]["generate"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    prefect = str(Path(sys.executable).parent / "prefect")
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("prefect server did not start within 180 s")


def run(model: Path) -> str:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | QUIET
    base["PYTHONPATH"] = str(REPO)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare = timed([sys.executable, "-c", "import torch, transformers, prefect"], base)
        rows.append(["bare `import torch, transformers, prefect`", f"{bare:.2f}", "", "", "1.00x"])

        env = base | {"PREFECT_HOME": str(root / "p1"), "DOCVL_CACHE_DIR": str(root / "c1")}
        out = root / "cold.jsonl"
        wall = timed(docvl_cmd(model, out), env)
        model_s = model_seconds(out)
        cold = (wall - model_s) / bare
        rows.append(["cold `docvl run` (ephemeral server)", f"{wall:.2f}", f"{model_s:.2f}"])
        rows[-1] += [f"{wall - model_s:.2f}", f"**{cold:.2f}x**"]

        rerun = timed(docvl_cmd(model, root / "rerun.jsonl"), env)
        rows.append(
            ["rerun, same cache", f"{rerun:.2f}", "0", f"{rerun:.2f}", f"{rerun / bare:.2f}x"]
        )

        senv = base | {"PREFECT_HOME": str(root / "p2")}
        server, url = start_server(senv)
        try:
            env = senv | {"PREFECT_API_URL": url, "DOCVL_CACHE_DIR": str(root / "c2")}
            out = root / "served.jsonl"
            wall = timed(docvl_cmd(model, out), env)
            model_s = model_seconds(out)
            rows.append(["cold `docvl run`, server running", f"{wall:.2f}", f"{model_s:.2f}"])
            rows[-1] += [f"{wall - model_s:.2f}", f"{(wall - model_s) / bare:.2f}x"]
        finally:
            server.terminate()
            server.wait(timeout=60)
    return (
        "### P8: cold start of `docvl run` on a one-page document\n\n"
        + table(["run", "wall s", "model s", "overhead s", "overhead / bare imports"], rows)
        + f"\n\nCold overhead / bare imports: **{cold:.2f}x** (target <= 1.5); rerun "
        f"{rerun:.2f} s (target < 2 s)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    if args.model is None:
        from pipeline.dev.tiny import build_tiny_model

        args.model = Path(tempfile.mkdtemp(prefix="docvl-bench-tiny-"))
        build_tiny_model(args.model)
    print(run(args.model) + "\n")


if __name__ == "__main__":
    main()
