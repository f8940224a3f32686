"""Helpers shared by the benchmark scripts: the repository on sys.path, markdown tables, peak RSS,
interleaved timing and a one-line machine description."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def peak_rss_mib() -> float:
    """VmHWM of this process. ru_maxrss would do, but Linux carries it across fork+exec, so a child
    of a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best (minimum) seconds of each function over ``rounds`` rounds, the functions alternating
    within each round, so that a busy machine slows every column alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load n/a"
    return (
        f"{platform.node()}: {cpus} CPUs, {platform.machine()}, CPython "
        f"{platform.python_version()}, {platform.platform(terse=True)}, {load}"
    )
