"""Stop a trainer right after it writes a checkpoint, as a kill would, for the resume tests."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


class Crash(Exception):
    """Raised once the chosen checkpoint is on disk."""


def stop_after_checkpoint(
    monkeypatch: Any, module: ModuleType, run: Callable[[], Any], step: int | None = None
) -> None:
    """Run `run()` with `module.save_checkpoint` raising Crash right after it saves the
    checkpoint of `step` (the first one if None); then put the real save_checkpoint back."""
    save = module.save_checkpoint

    def save_then_crash(out, model, optimizer, scheduler, done, *args, **kwargs):
        save(out, model, optimizer, scheduler, done, *args, **kwargs)
        if step is None or done == step:
            raise Crash

    monkeypatch.setattr(module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        run()
    monkeypatch.setattr(module, "save_checkpoint", save)
