"""One `artalign loop` per folder: an exclusive `flock` on OUT/.lock while the loop runs.

The lock dies with its process (the kernel drops an flock when its file is closed, a SIGKILL
included), so a lock can never go stale; the file only keeps the holder's PID for the message a
second loop prints. A PID left in the file by a process that no longer runs (a killed loop) is
taken over, with a note. The file is never deleted: unlinking a lock file another process may be
waiting on would let two processes hold two different files.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from base_models.errors import ArtalignError

LOCK_NAME = ".lock"


def _pid_in(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except ValueError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def loop_lock(out: Path, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold OUT/.lock for the block; raise ArtalignError naming it when another loop holds it."""
    path = Path(out) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            who = f"PID {pid}" if pid else "another process"
            raise ArtalignError(
                f"another artalign loop ({who}) is running in {out}: it holds {path}; wait for "
                f"it to finish (or stop it), then rerun; a lock left by a dead process is taken "
                "over by itself"
            ) from None
        old = _pid_in(fd)
        if old is not None and old != os.getpid() and not _alive(old):
            log(f"note: took over {path} from PID {old}, which is no longer running")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no PID behind
    finally:
        os.close(fd)  # releases the flock
