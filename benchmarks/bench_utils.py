"""Helpers the benchmark scripts share: a median timer and running an artalign command."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of `fn`, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def artalign(*args: str) -> float:
    """Run one artalign command (the console script beside this Python), failing loudly;
    return its wall time in seconds."""
    exe = Path(sys.executable).with_name("artalign")
    cmd = [str(exe) if exe.is_file() else "artalign", *args]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - t0
