"""Stage 1 of `train-clip`: supervised pretraining of the image tower on the data's own labels.

LiT's recipe (Zhai et al. 2022, arXiv 2111.07991) locks an image tower pretrained with supervision
and trains only the text tower against it. Without an ImageNet for procedural art, the tower is
pretrained here on the training split's attribute records (`labels.py`: per grid cell shape,
colour and size; style; background) through linear heads over its normalised embedding; the
heads are dropped afterwards. Augmentation: horizontal flips (the cell targets follow) and
shifts of a pixel or two.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from accelerate import Accelerator
from tqdm import tqdm

from base_models.clip.data import PairSet, shift_images
from base_models.clip.labels import AttributeHeads, attribute_targets, flip_cells
from base_models.train_utils import EpochOrder, lr_factor


def pretrain_image_tower(
    visual: torch.nn.Module,
    embed_dim: int,
    pairs: PairSet,
    mean: torch.Tensor,
    std: torch.Tensor,
    cfg: Any,
    accelerator: Accelerator,
) -> dict[str, Any]:
    """Train `visual` (in place) with attribute heads for cfg.pretrain_steps steps.

    cfg supplies pretrain_steps, pretrain_batch_size, pretrain_lr, warmup_steps, weight_decay,
    grad_clip, hflip, max_shift and seed. Returns the stage's figures (loss, per-head training
    accuracy over the last steps, seconds).
    """
    targets = attribute_targets(pairs.attrs)
    torch.manual_seed(cfg.seed + 1)
    heads = AttributeHeads(embed_dim)
    batch = min(cfg.pretrain_batch_size, len(pairs))
    order = EpochOrder(len(pairs), batch, cfg.seed + 1)
    total = cfg.pretrain_steps
    params = [
        {
            "params": [p for p in visual.parameters() if p.ndim >= 2],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for p in visual.parameters() if p.ndim < 2], "weight_decay": 0.0},
        {"params": list(heads.parameters()), "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=cfg.pretrain_lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = min(cfg.warmup_steps, max(1, total // 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    visual_p, heads_p, optimizer = accelerator.prepare(visual, heads, optimizer)
    device = accelerator.device
    visual_p.train()
    losses: list[float] = []
    tail: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(
        range(total),
        desc="clip image tower",
        unit="step",
        mininterval=1.0,
        disable=not accelerator.is_local_main_process,
    )
    per_process = max(1, batch // accelerator.num_processes)
    rank = accelerator.process_index
    for step in bar:
        index = order(step)[rank * per_process : (rank + 1) * per_process]
        gen = torch.Generator().manual_seed(cfg.seed * 6_151 + step * 97_571 + rank + 3)
        images = pairs.images[index]
        flip = torch.rand(len(index), generator=gen) < cfg.hflip
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        if cfg.max_shift > 0:
            images = shift_images(images, cfg.max_shift, gen)
        x = ((images.float() - mean) / std).to(device)
        y = {
            k: v.to(device)
            for k, v in flip_cells({k: v[index] for k, v in targets.items()}, flip).items()
        }
        features = visual_p(x)
        loss = heads_p.loss(features, y)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(
                list(visual_p.parameters()) + list(heads_p.parameters()), cfg.grad_clip
            )
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step >= total - 20:
            tail.append(accelerator.unwrap_model(heads_p).accuracy(features.detach(), y))
        if (step + 1) % cfg.log_every == 0:
            bar.set_postfix(loss=f"{sum(losses[-cfg.log_every :]) / cfg.log_every:.3f}")
    bar.close()
    last = losses[-min(len(losses), 20) :]
    return {
        "pretrain_steps": total,
        "pretrain_final_loss": sum(last) / len(last) if last else None,
        "pretrain_train_accuracy": {k: sum(t[k] for t in tail) / len(tail) for k in tail[0]}
        if tail
        else {},
        "pretrain_seconds": round(time.perf_counter() - t0, 2),
    }
