"""The alignment trainers across processes (`accelerate launch`), in one place.

The LoRA adapters are trained outside any DDP wrapper (peft's adapters on a UNet that stays
unwrapped, so the same code runs with one process or many): each process computes gradients on
its share of a batch, then `average_gradients` makes them equal everywhere before the optimizer
steps, so every process keeps identical weights. Figures are averaged the same way before the
main process logs them. With one process every function here passes its input through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def local_rows(n: int, accelerator: Any) -> torch.Tensor:
    """This process's rows of an n-row batch: rank, rank + world, ... (all rows in one process)."""
    return torch.arange(accelerator.process_index, n, accelerator.num_processes)


def average_gradients(params: Iterable[torch.nn.Parameter], accelerator: Any) -> None:
    """Replace every gradient by its mean over the processes (a no-op in one process)."""
    if accelerator.num_processes == 1:
        return
    for p in params:
        if p.grad is not None:
            p.grad = accelerator.reduce(p.grad, reduction="mean")


def mean_figures(figures: dict[str, float], accelerator: Any) -> dict[str, float]:
    """Each figure averaged over the processes (on the process's device, as NCCL needs)."""
    if accelerator.num_processes == 1:
        return figures
    keys = sorted(figures)
    local = torch.tensor([float(figures[k]) for k in keys], device=accelerator.device)
    total = accelerator.reduce(local, reduction="mean").cpu().tolist()
    return dict(zip(keys, total, strict=True))


def gather_objects(accelerator: Any, obj: Any) -> list[Any]:
    """`obj` of every process, in rank order."""
    from accelerate.utils import gather_object

    return gather_object([obj])


def any_process(flag: bool, accelerator: Any) -> bool:
    """True when `flag` is true on any process: a decision every process must take together
    (a stop on time, which each process measures on its own clock)."""
    if accelerator.num_processes == 1:
        return flag
    local = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(local, reduction="sum").item() > 0)
