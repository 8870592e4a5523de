"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds
    model.safetensors   the model's state dict
    state.safetensors   optimizer tensors ("optimizer.<param>.<key>") and RNG states ("rng.*")
    state.json          step, config, optimizer hyper-parameters, scheduler state
It is written beside its final place and renamed in, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from base_models.errors import ArtalignError
from base_models.io_utils import replace_dir
from base_models.optim_state import join_optimizer, split_optimizer

CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    extra: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write out/checkpoint atomically (replacing the previous one).

    `extra` goes to state.json, `extra_tensors` (any state a caller adds) to
    state.safetensors; load_checkpoint gives both back.
    """
    final = out / CHECKPOINT_DIR
    tmp = Path(tempfile.mkdtemp(prefix=f".{CHECKPOINT_DIR}.", dir=out))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is as readable as the model
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        tensors, optim_meta = split_optimizer(optimizer.state_dict())
        tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra_tensors or {}).items()})
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        save_file(tensors, str(tmp / "state.safetensors"))
        meta = {"step": step, "optimizer": optim_meta, "scheduler": scheduler.state_dict(), **extra}
        (tmp / "state.json").write_text(json.dumps(meta, indent=1) + "\n")
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def load_checkpoint(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model, optimizer, scheduler and RNG from out/checkpoint.

    Returns state.json's content and the extra tensors saved with it.
    """
    folder = out / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        raise ArtalignError(
            f"--resume: no checkpoint in {folder}; start without --resume, or pass the --out "
            "of an earlier run"
        )
    meta = json.loads((folder / "state.json").read_text())
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except RuntimeError as e:
        raise ArtalignError(
            f"checkpoint {folder} holds another architecture than this config ({e}); "
            "resume with the config it was trained with"
        ) from e
    # torch moves each state tensor to its parameter's device itself (and keeps "step" where the
    # optimizer wants it), so everything is loaded on the CPU.
    tensors = load_file(str(folder / "state.safetensors"), device="cpu")
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optimizer.")}
    optimizer.load_state_dict(join_optimizer(opt_tensors, meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    extra = {k: v for k, v in tensors.items() if not k.startswith(("optimizer.", "rng."))}
    return meta, extra
