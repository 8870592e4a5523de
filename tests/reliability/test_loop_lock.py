"""Two `artalign loop` processes on one folder: the second refuses, naming OUT/.lock and the fix;
the lock goes with its process (SIGKILL included) and a dead holder's PID is taken over."""

from __future__ import annotations

import signal
import subprocess
import sys

from rlhf.loop.lock import loop_lock
from tests.reliability.procs import ENV, REPO, artalign_cmd, assert_one_line_error, run

HOLD = (
    "import sys, time; from pathlib import Path; from rlhf.loop.lock import loop_lock\n"
    "with loop_lock(Path(sys.argv[1])):\n"
    "    print('held', flush=True); time.sleep(120)\n"
)


def _holder(out) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], cwd=REPO, env=ENV, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_loop_refuses_and_a_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "loop"
    out.mkdir()
    holder = _holder(out)
    try:
        second = run(artalign_cmd("loop", "--preset", "micro", "--out", out), timeout=60)
        line = assert_one_line_error(second, f"{out}/.lock", f"PID {holder.pid}", "wait")
        assert "Traceback" not in second.stdout and not (out / "loop_config.yaml").exists()
        assert line.count("\n") == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kill released the flock; the file still names the dead holder: taken over with a note
    assert (out / ".lock").read_text().strip() == str(holder.pid)
    notes: list[str] = []
    with loop_lock(out, notes.append) as path:
        assert path.read_text().strip() != str(holder.pid)
    assert notes == [f"note: took over {path} from PID {holder.pid}, which is no longer running"]
    assert path.read_text() == ""  # released on exit, no PID left behind
    again = _holder(out)  # and another process can take it
    again.send_signal(signal.SIGKILL)
    again.wait()
