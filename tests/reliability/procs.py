"""Run `artalign` in a real subprocess, as a user would: its exit code and its stderr lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def artalign_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "base_models.cli_main", *map(str, argv)]


def run(cmd: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout, **kw
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr's lines that are not progress bars or warnings."""
    return [
        ln
        for ln in proc.stderr.splitlines()
        if ln.strip() and "%|" not in ln and "Warning" not in ln and not ln.startswith(" ")
    ]


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2, no traceback, and one `error: ...` line holding every word; return it."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child, before exec: writes past `limit` fail with EFBIG
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def run_disk_full(cmd: list[str], limit: int, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `cmd` as if the disk filled up: no file may grow past `limit` bytes (RLIMIT_FSIZE)."""
    return run(cmd, timeout=timeout, preexec_fn=_limit_file_size(limit))
