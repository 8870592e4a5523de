"""Tell a full disk (or a file-size limit) apart from a bug, for the CLI's one-line errors.

Every writer puts its file beside its final place and renames it in (`io_utils`), and the label
store writes in SQLite transactions, so a write that fails for lack of space leaves the earlier
outputs as they were: the user only has to free space and rerun. The failure comes as an
OSError (ENOSPC, EFBIG, EDQUOT), as SQLite's "database or disk is full" / "disk I/O error", or
as a library's own error that quotes the OS message (safetensors).
"""

from __future__ import annotations

import errno
import sqlite3

DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
DISK_TEXTS = ("No space left on device", "File too large", "Disk quota exceeded")
SQLITE_TEXTS = ("database or disk is full", "disk I/O error")


def _is_disk_error(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS:
        return True
    if isinstance(e, sqlite3.OperationalError) and any(t in str(e) for t in SQLITE_TEXTS):
        return True
    return any(t in str(e) for t in DISK_TEXTS)


def disk_error_message(e: BaseException) -> str | None:
    """A one-line message when `e` (or an exception it came from) is a full disk, else None."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if _is_disk_error(cause):
            where = getattr(cause, "filename", None)
            what = " ".join(str(cause).split())[:200]
            return (
                f"the disk is full or a file-size limit was reached"
                f"{f' writing {where}' if where else ''} ({what}); free some space and rerun "
                "(the outputs written before are intact: files are renamed in when complete)"
            )
        cause = cause.__cause__ or cause.__context__
    return None
