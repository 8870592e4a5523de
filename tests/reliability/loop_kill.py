"""Run `artalign loop` (or its first N stages) in a subprocess and SIGKILL it inside a stage.

A stage is running from the moment its `.stages/<name>.started` marker appears until its
`.done` marker does (rlhf/loop/runner.py); `kill_inside` waits for the first, sleeps, and kills
the process if the second has not appeared, which it then checks.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.reliability.procs import ENV, REPO

# the test process's thread count (no OMP_NUM_THREADS=1): float sums must add up the same way
# in the killed run, the in-process rerun and the fresh run for their outputs to be bit-equal
LOOP_ENV = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}

# the first `n` stages of the micro loop, under the loop's lock, as `artalign loop` runs them
FIRST_STAGES = """
import sys
from pathlib import Path
from rlhf.loop.config import load_loop_config
from rlhf.loop.lock import loop_lock
from rlhf.loop.runner import run_stages
from rlhf.loop.stages import build_stages
out, n, overrides = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
out.mkdir(parents=True, exist_ok=True)
with loop_lock(out):
    run_stages(build_stages(load_loop_config("micro", None, overrides), out, None, None)[:n], out)
"""


def start(out: Path, n_stages: int | None, log: Path, extra: tuple[str, ...] = ()):
    """The micro loop (all stages when n_stages is None) in a subprocess writing to `log`;
    `extra`: KEY=VALUE overrides."""
    if n_stages is None:
        cmd = [sys.executable, "-m", "rlhf.cli_loop", "--preset", "micro", "--out", str(out)]
    else:
        cmd = [sys.executable, "-c", FIRST_STAGES, str(out), str(n_stages)]
    cmd += list(extra)
    with log.open("a") as f:
        return subprocess.Popen(cmd, cwd=REPO, env=LOOP_ENV, stdout=f, stderr=subprocess.STDOUT)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def kill_inside(proc: subprocess.Popen, out: Path, stage: str, delay: float) -> bool:
    """SIGKILL `proc` `delay` seconds after `stage` starts; True if it was still running it."""
    stages = out / ".stages"
    started = wait_for(stages / f"{stage}.started", proc)
    if started:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return started and not (stages / f"{stage}.done").exists()


def finished(out: Path) -> dict[str, float]:
    """finished_ts of every done-marker: a stage redone gets a new one."""
    return {
        p.stem: json.loads(p.read_text())["finished_ts"]
        for p in sorted((out / ".stages").glob("*.done"))
    }


def hashes(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under `folder` by relative path, leaving out names in `skip`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(folder).parts)
    }
