"""Progress bars that do not outlive an error: a bar left on screen by a failed loop would sit
above the one-line error; `cleared_on_error` clears it instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def cleared_on_error(bar: Any) -> Iterator[Any]:
    """Yield the tqdm `bar`; close it when the block ends, clearing its line if the block raised.

    Drive the bar with `bar.update()`, not by iterating it: a loop over the bar closes it (and
    leaves it on screen) while the error unwinds, before this can clear it.
    """
    try:
        yield bar
    except BaseException:
        bar.leave = False
        raise
    finally:
        bar.close()
