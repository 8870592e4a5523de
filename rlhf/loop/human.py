"""`artalign loop --human`: people label the batch in the app; the loop waits for the admin.

After the loop makes a labeling batch, it prints how to serve the app on the store and how to
invite raters, then polls the store (read-only, every `poll_seconds`) until the batch is closed
— by the admin with `artalign label close --db DB --batch NAME` — and continues with the
judgments people gave. The wait survives nothing: a killed loop simply waits again on rerun.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path

from base_models.errors import ArtalignError
from labeling_app.store import SYSTEM, Store

Log = Callable[[str], None]


def serve_instructions(db: Path, batch: str, host: str = "127.0.0.1", port: int = 8501) -> str:
    """The commands an admin runs to have people label `batch` of `db` and to hand it back."""
    q = shlex.quote(str(db))
    url = f"http://{host}:{port}"
    return "\n".join(
        [
            f"labeling batch {batch!r} is ready in {db}; people label it in the app:",
            f"  artalign label serve --db {q} --host {host} --port {port}    # then open {url}",
            f"  artalign label users add boss --db {q} --role admin --password-stdin",
            f"  artalign label users add NAME --db {q} --invite --base-url {url}",
            f"  artalign label status --db {q}                               # progress",
            "when enough judgments are in, close the batch and this loop continues:",
            f"  artalign label close --db {q} --batch {batch}",
        ]
    )


def wait_for_batch(
    db: Path,
    batch: str,
    poll_seconds: float = 10.0,
    log: Log = print,
    host: str = "127.0.0.1",
    port: int = 8501,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Print the serving instructions, then block until `batch` of `db` is closed.

    Progress lines are printed when the number of judgments changes. Returns the batch's final
    progress (`Store.progress`). `timeout` (seconds, None: wait for ever) raises ArtalignError.
    """
    if not Path(db).is_file():
        raise ArtalignError(f"label store {db} does not exist; rerun the loop to make the batch")
    log(serve_instructions(Path(db), batch, host, port))
    start, last = time.monotonic(), None
    while True:
        with Store(db) as store:
            b = store.batch(batch)
            progress = store.progress(SYSTEM, b.id)
        if progress["done"] != last:
            last = progress["done"]
            log(f"batch {batch}: {progress['done']} of {progress['needed']} judgments")
        if b.done:
            log(f"batch {batch} closed with {progress['done']} judgments; continuing")
            return progress
        if timeout is not None and time.monotonic() - start > timeout:
            raise ArtalignError(
                f"batch {batch} was not closed within {timeout:g} s; close it "
                f"with `artalign label close` and rerun the loop"
            )
        sleep(poll_seconds)
