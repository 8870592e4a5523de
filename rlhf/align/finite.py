"""Stop a trainer at the first NaN or inf (reward, loss, gradient norm), before the optimizer step.

A NaN that reaches the optimizer turns every adapter weight into NaN, and the next checkpoint
would keep them. The trainers call `check_finite` before each step; the run then stops with one
line (`stop_message`) saying what went wrong and where, and that OUT/checkpoint — written before
the fault — is kept for `--resume`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from rlhf.align.processes import any_process


class NonFinite(ArtalignError):
    """A reward, loss or gradient norm that is NaN or inf; raised before the optimizer step."""


def check_finite(what: str, *values: Any, accelerator: Any = None) -> None:
    """Raise NonFinite naming `what` unless every value is finite (on every process)."""
    bad = not all(math.isfinite(float(v)) for v in values)
    if accelerator is not None:
        bad = any_process(bad, accelerator)
    if bad:
        raise NonFinite(f"{what} is NaN or inf")


def stop_message(error: NonFinite, out: Path, at: str, unit: str) -> ArtalignError:
    """The one-line error of a run stopped by `error` at `at` (e.g. "epoch 3"), naming the
    checkpoint it keeps (`unit`: what its step counts, "epoch" or "step")."""
    state = Path(out) / "checkpoint" / "state.json"
    if state.is_file():
        step = json.loads(state.read_text()).get("step")
        kept = (
            f"the last good checkpoint {state.parent} ({unit} {step}) is kept: fix the cause "
            "(the reward, a lower lr) and rerun with --resume"
        )
    else:
        kept = "no checkpoint was written before it: fix the cause (the reward, a lower lr), rerun"
    return ArtalignError(f"{error} at {at}; the run stopped before updating the weights; {kept}")
