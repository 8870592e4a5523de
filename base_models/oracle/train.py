"""`artalign oracle train`: train the attribute oracle on fresh procedural images.

The images are rendered in memory once per run (see data.py) and augmented on the fly so the
oracle also reads imperfect images, such as a generator's: Gaussian blur, pixel noise, small
brightness / contrast / per-channel gain changes and one-pixel translations. None of them changes
a colour name, a size class or a cell (a shift of 1 px is a tenth of a cell; the world's own
jitter is up to 0.12 cell).

Randomness: the shuffle of epoch e and the augmentations of process r in epoch e come from CPU
generators seeded by (seed, e) and (seed, e, r), so every process sees one shared shuffle and a run
resumed at epoch e draws exactly what an uninterrupted run would.

Checkpoints (out/checkpoint/, rewritten at the end of every epoch, swapped in whole):
model.safetensors, optimizer.safetensors (AdamW moments and torch's global RNG state as tensors)
and state.json (epoch, step, optimiser hyper-parameters, the config). Nothing is pickled.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from base_models.errors import ArtalignError
from base_models.io_utils import replace_dir, write_json
from base_models.optim_state import join_optimizer, split_optimizer
from base_models.oracle.config import OracleConfig
from base_models.oracle.data import IGNORE, OracleData, render_items
from base_models.oracle.evaluate import attribute_accuracy
from base_models.oracle.model import AttributeOracle
from base_models.oracle.reading import decode

CHECKPOINT = "checkpoint"
# Config keys a resumed run must share with its checkpoint (the rest, e.g. epochs, may change).
_RESUME_KEYS = ("n_train", "seed", "size", "unsafe_share", "channels", "hidden", "batch_size")


# ----------------------------------------------------------------------------- augmentation


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own sigma (B,) via a separable 5-tap kernel; x is (B, 3, H, W)."""
    b, c, h, w = x.shape
    taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)  # (5,)
    s = sigma.clamp_min(1e-3).to(x.dtype)[:, None]  # (B, 1)
    k = torch.exp(-0.5 * (taps[None, :] / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (B, 5)
    k = k.repeat_interleave(c, dim=0)  # (B*3, 5)
    y = F.pad(x.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)  # horizontal: (1, B*3, H+4, W)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)  # vertical: (1, B*3, H, W)
    return y.reshape(b, c, h, w)


def _shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, s: int) -> torch.Tensor:
    """Translate image i by (dx[i], dy[i]) whole pixels, |d| <= s, repeating the border."""
    if s <= 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (s, s, s, s), mode="replicate")  # (B, 3, H+2s, W+2s)
    out = torch.empty_like(x)
    for ox in range(-s, s + 1):
        for oy in range(-s, s + 1):
            sel = (dx == ox) & (dy == oy)
            if sel.any():
                out[sel] = padded[sel, :, s - oy : s - oy + h, s - ox : s - ox + w]
    return out


def augment(x: torch.Tensor, cfg: OracleConfig, gen: torch.Generator) -> torch.Tensor:
    """Randomly degrade a batch (B, 3, H, W) in [0, 1]; all randomness from `gen` (on CPU)."""
    b = x.shape[0]

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(x.device)

    on = u(b) < cfg.aug_prob  # (B,) which images are augmented at all
    s = cfg.shift_px
    dx = torch.randint(-s, s + 1, (b,), generator=gen).to(x.device) * on
    dy = torch.randint(-s, s + 1, (b,), generator=gen).to(x.device) * on
    x = _shift(x, dx, dy, s)
    if cfg.blur_sigma > 0:
        sigma = u(b) * cfg.blur_sigma * on
        blurred = _gaussian_blur(x, sigma)
        x = torch.where((sigma > 0.05)[:, None, None, None], blurred, x)
    gain = 1 + (2 * u(b, 1, 1, 1) - 1) * cfg.brightness  # brightness (B, 1, 1, 1)
    gain = gain * (1 + (2 * u(b, 3, 1, 1) - 1) * 0.3 * cfg.brightness)  # small per-channel gain
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + (2 * u(b, 1, 1, 1) - 1) * cfg.contrast
    y = (x - mean) * contrast + mean
    y = y * gain
    noise_std = u(b, 1, 1, 1) * cfg.noise_std
    y = y + torch.randn(x.shape, generator=gen).to(x.device) * noise_std
    keep = ~on[:, None, None, None]
    return torch.where(keep, x, y).clamp(0, 1)


# ----------------------------------------------------------------------------- loss


def oracle_loss(
    logits: dict[str, torch.Tensor], t: dict[str, torch.Tensor], smoothing: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of presence BCE, per-cell CE for shape/colour/size (occupied cells only) and image CE.

    logits as AttributeOracle.forward; t: presence (B, 9), shape/colour/size (B, 9) with IGNORE
    in empty cells, background/style (B,).
    """
    presence = F.binary_cross_entropy_with_logits(logits["presence"].float(), t["presence"])
    parts = {"presence": presence}
    for key in ("shape", "colour", "size"):
        lg = logits[key].float()
        parts[key] = F.cross_entropy(
            lg.reshape(-1, lg.shape[-1]),
            t[key].reshape(-1),
            ignore_index=IGNORE,
            label_smoothing=smoothing,
        )
    for key in ("background", "style"):
        parts[key] = F.cross_entropy(logits[key].float(), t[key], label_smoothing=smoothing)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


# ----------------------------------------------------------------------------- helpers


def _to_tensors(data: OracleData, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "images": torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(device),
        "presence": torch.from_numpy(data.presence).to(device),
        **{
            k: torch.from_numpy(getattr(data, k)).to(device)
            for k in ("shape", "colour", "size", "background", "style")
        },
    }


def _generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integers such as (seed, epoch, rank)."""
    state = np.random.SeedSequence(list(keys)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


def _lr(cfg: OracleConfig, step: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_checkpoint(
    out: Path,
    model: AttributeOracle,
    opt: torch.optim.Optimizer,
    epoch: int,
    step: int,
    cfg: OracleConfig,
) -> Path:
    """Write out/checkpoint/ whole: built in a temporary folder, then swapped into place."""
    final = out / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=out))
    try:
        model.save(tmp)
        tensors, meta = split_optimizer(opt.state_dict())
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        write_json(
            tmp / "state.json",
            {"epoch": epoch, "step": step, "config": cfg.to_dict(), "optimizer": meta},
        )
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def _load_checkpoint(out: Path, cfg: OracleConfig) -> tuple[dict, dict, AttributeOracle]:
    import json

    folder = out / CHECKPOINT
    state_path = folder / "state.json"
    if not state_path.is_file():
        raise ArtalignError(
            f"--resume: no checkpoint in {folder} (state.json missing); run without --resume"
        )
    state = json.loads(state_path.read_text())
    saved = state.get("config", {})
    changed = [k for k in _RESUME_KEYS if saved.get(k) != cfg.to_dict()[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {cfg.to_dict()[k]!r}" for k in changed)
        raise ArtalignError(
            f"--resume: the config differs from the checkpoint in {folder} ({diffs}); "
            "use the same settings, or train afresh without --resume"
        )
    tensors = load_file(str(folder / "optimizer.safetensors"))
    return state, tensors, AttributeOracle.load(folder)


@torch.no_grad()
def validate(model: AttributeOracle, data: OracleData, device: torch.device, batch: int = 512):
    """Attribute accuracies of the model on rendered data (clean images, eval mode)."""
    model.eval()
    x_all = torch.from_numpy(data.images).permute(0, 3, 1, 2)
    readings = []
    for a in range(0, len(data), batch):
        x = x_all[a : a + batch].to(device).float().div(255)
        x = x.contiguous(memory_format=torch.channels_last)
        readings += decode(model(x), model.vocab, model.grid)
    model.train()
    return attribute_accuracy(readings, data.records)


# ----------------------------------------------------------------------------- training


def train_oracle(cfg: OracleConfig, out: Path, resume: bool = False) -> dict[str, Any]:
    """Train the oracle; write it to `out` with train_config.yaml and metrics.json; return metrics.

    With `resume`, continue from out/checkpoint/ (the epoch after the last one finished).
    """
    from accelerate import Accelerator

    cfg.validate()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"{out} exists and is not a folder; choose another --out")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    device = accelerator.device
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    if main:
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    state, tensors = None, None
    if resume:
        state, tensors, model = _load_checkpoint(out, cfg)
        model.train()
    else:
        torch.manual_seed(cfg.seed)
        model = AttributeOracle(cfg.size, cfg.channels, cfg.hidden)
    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, step = 0, 0
    if state is not None and tensors is not None:
        opt.load_state_dict(join_optimizer(tensors, state["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
    model, opt = accelerator.prepare(model, opt)

    kw = {
        "size": cfg.size,
        "unsafe_share": cfg.unsafe_share,
        "supersample": cfg.supersample,
        "workers": cfg.render_workers,
    }
    train_data = render_items(cfg.seed, 0, cfg.n_train, desc="oracle images", **kw)
    val_data = render_items(cfg.seed, cfg.n_train, cfg.n_val, desc="oracle val images", **kw)
    t = _to_tensors(train_data, device)
    del train_data  # the tensors hold the images now
    rendered = time.perf_counter()

    batch = max(1, min(cfg.batch_size, cfg.n_train // world))
    steps_per_epoch = max(1, cfg.n_train // (batch * world))
    total_steps = steps_per_epoch * cfg.epochs
    losses: dict[str, float] = {}
    bar = tqdm(
        total=total_steps,
        initial=min(step, total_steps),
        desc="oracle train",
        unit="step",
        disable=not main,
        mininterval=1.0,
    )
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        perm = torch.randperm(cfg.n_train, generator=_generator(cfg.seed, epoch)).to(device)
        gen = _generator(cfg.seed, epoch, rank + 1)  # this process's augmentations
        for s in range(steps_per_epoch):
            a = (s * world + rank) * batch
            idx = perm[a : a + batch]
            x = t["images"][idx].float().div(255)  # (b, 3, S, S)
            x = augment(x, cfg, gen).contiguous(memory_format=torch.channels_last)
            targets = {k: v[idx] for k, v in t.items() if k != "images"}
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, step, total_steps)
            with accelerator.autocast():
                logits = model(x)
            loss, parts = oracle_loss(logits, targets, cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            opt.step()
            step += 1
            for k, v in parts.items():  # running means for the progress bar
                losses[k] = v if k not in losses else 0.95 * losses[k] + 0.05 * v
            if step % cfg.log_every == 0 or s == steps_per_epoch - 1:
                bar.set_postfix(epoch=epoch + 1, loss=f"{sum(losses.values()):.3f}")
            bar.update(1)
        accelerator.wait_for_everyone()
        if main:
            unwrapped = accelerator.unwrap_model(model)
            save_checkpoint(out, unwrapped, opt, epoch + 1, step, cfg)
    bar.close()
    trained = time.perf_counter()

    metrics: dict[str, Any] = {}
    if main:
        oracle = accelerator.unwrap_model(model)
        metrics = {f"val_{k}": v for k, v in validate(oracle, val_data, device).items()}
        metrics.update(
            {
                "final_loss": round(sum(losses.values()), 5) if losses else None,
                **{f"final_loss_{k}": round(v, 5) for k, v in losses.items()},
                "epochs": cfg.epochs,
                "steps": step,
                "n_train": cfg.n_train,
                "n_val": cfg.n_val,
                "render_seconds": round(rendered - started, 1),
                "train_seconds": round(trained - rendered, 1),
                "torch_threads": torch.get_num_threads(),
                "device": str(device),
            }
        )
        oracle.save(out)
        cfg.save_yaml(out / "train_config.yaml")
        write_json(out / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return metrics
