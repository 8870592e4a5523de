"""Pieces the trainers (CLIP, VAE, UNet) share: Accelerate set-up, out-folder guards, the
learning-rate schedule, a resumable data order, per-step random streams and checkpoint timing."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from accelerate import Accelerator

from base_models.errors import ArtalignError

MIXED_PRECISION = ("no", "bf16", "fp16")


def make_accelerator(mixed_precision: str) -> Accelerator:
    """An Accelerator for `mixed_precision`, or an ArtalignError saying why it cannot run here."""
    if mixed_precision not in MIXED_PRECISION:
        raise ArtalignError(
            f"mixed_precision={mixed_precision!r} is unknown; choose one of "
            f"{', '.join(MIXED_PRECISION)}"
        )
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ArtalignError("mixed_precision=fp16 needs a GPU; on CPU use no (or bf16)")
    try:
        return Accelerator(mixed_precision=mixed_precision)
    except (ValueError, RuntimeError) as e:
        raise ArtalignError(f"mixed_precision={mixed_precision} is unavailable here: {e}") from e


def check_out(out: Path, resume: bool, checkpoint_dir: str = "checkpoint") -> None:
    """Refuse an --out that is a file, or one that holds a run unless resuming it."""
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    if not resume and (out / checkpoint_dir).exists():
        raise ArtalignError(
            f"{out} already holds a training run; pass --resume to continue it, or pick a new --out"
        )


def check_empty_out(out: Path, resume: bool) -> None:
    """`check_out`, and refuse any non-empty --out unless resuming: never mix two runs."""
    check_out(out, resume)
    if not resume and out.is_dir() and any(out.iterdir()):
        raise ArtalignError(
            f"--out {out} is not empty (it holds another run); pick a new --out, or pass "
            "--resume to continue the run there"
        )


def check_config(name: str, checks: list[tuple[bool, str]]) -> None:
    """Raise an ArtalignError for the first failed (ok, message) check of config `name`."""
    for ok, message in checks:
        if not ok:
            raise ArtalignError(f"bad {name}: {message}")


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak lr: linear warmup over `warmup` steps, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one training step on one process: every random draw of the step
    (augmentation, noise, timesteps, dropout) comes from it, so a resumed run repeats an
    uninterrupted one draw for draw."""
    return torch.Generator().manual_seed(seed * 7_919 + step * 104_729 + rank)


def checkpoint_due(every: int, done: int, total: int) -> bool:
    """Whether a periodic checkpoint is due after `done` steps (the final one is saved apart)."""
    return bool(every) and done % every == 0 and done < total


class EpochOrder:
    """The items of each step: epoch e is a random permutation seeded by (seed, e), cut into
    batches (the last partial batch is dropped). A pure function of the step, so a resumed run
    sees exactly the batches an uninterrupted one would have."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def __call__(self, step: int) -> torch.Tensor:
        """The `batch_size` item indices of global step `step`."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
