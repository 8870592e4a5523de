"""Resume state of the alignment trainers: adapters, optimizer, trackers and every RNG.

Built on `base_models.checkpoint` (tensors in safetensors, the rest in JSON, written beside its
final place and renamed in), with the model narrowed to the LoRA weights: the base model is the
SD folder, so a checkpoint holds only what training changed. numpy's and Python's RNG states go
to JSON. A resumed run continues where the checkpoint was taken: the adapters, the optimizer's
moments, the stat trackers and the step counters all come back (ddpo-pytorch's users lost runs
to resumes that silently restarted from the base model).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models import checkpoint as base_checkpoint
from base_models.errors import ArtalignError

CHECKPOINT_DIR = base_checkpoint.CHECKPOINT_DIR


class LoraWeights:
    """The LoRA parameters of a module, with the state_dict interface checkpoints use."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.params = {n: p for n, p in module.named_parameters() if "lora_" in n}
        if not self.params:
            raise ArtalignError("no LoRA is attached; attach one before checkpointing")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.params.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.params) - set(state)
        extra = set(state) - set(self.params)
        if missing or extra:
            raise RuntimeError(f"LoRA keys differ: {len(missing)} missing, {len(extra)} unexpected")
        with torch.no_grad():
            for n, p in self.params.items():
                if state[n].shape != p.shape:
                    raise RuntimeError(f"{n}: shape {tuple(state[n].shape)} vs {tuple(p.shape)}")
                p.copy_(state[n].to(p.device, p.dtype))


def _python_rng() -> list[Any]:
    version, state, gauss = random.getstate()
    return [version, list(state), gauss]


def _numpy_rng() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": keys.tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def save(
    out: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    extra: dict[str, Any],
) -> Path:
    """Write OUT/checkpoint atomically: LoRA weights, optimizer, scheduler, RNGs, `extra` (JSON)."""
    rng = {"python": _python_rng(), "numpy": _numpy_rng()}
    return base_checkpoint.save_checkpoint(
        Path(out), LoraWeights(module), optimizer, scheduler, step, {**extra, "rng": rng}
    )


def has_checkpoint(out: Path) -> bool:
    return (Path(out) / CHECKPOINT_DIR / "state.json").is_file()


def load(
    out: Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore what `save` wrote into the attached LoRA and the optimizer; return the JSON state."""
    meta, _ = base_checkpoint.load_checkpoint(Path(out), LoraWeights(module), optimizer, scheduler)
    rng = meta.pop("rng", None)
    if rng:
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))
        n = rng["numpy"]
        np.random.set_state(
            (
                n["name"],
                np.asarray(n["keys"], dtype=np.uint32),
                n["pos"],
                n["has_gauss"],
                n["cached"],
            )
        )
    return meta
