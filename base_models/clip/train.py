"""`artalign base train-clip`: training a tiny open_clip CLIP, LiT-style by default.

Two stages (Zhai et al. 2022, LiT, arXiv 2111.07991):
1. pretrain_steps > 0: the image tower learns the data's attribute labels with supervision
   (`pretrain.py`; the training split's records, never the oracle);
2. contrastive: a batch of (image, caption) pairs -> both towers -> CLIP's loss (symmetric
   InfoNCE with a learnable temperature, or SigLIP's) -> AdamW, linear warmup then cosine decay.
   lock_image=true freezes the image tower and embeds each image once (`lit.py`), so a step runs
   only the text tower; positives=unicl counts every caption that is true of an image as its
   positive (`positives.py`, UniCL). With pretrain_steps=0, lock_image=false and positives=pair
   this is plain CLIP training with open_clip's ClipLoss / SigLipLoss.
Accelerate supplies the device, mixed precision and multi-process runs (`accelerate launch`);
each process embeds its slice of the global batch and the loss gathers the features, so every
pair still sees the whole batch as negatives.

Out folder:
    open_clip_config.json + open_clip_model.safetensors   the model, in open_clip's format
    train_config.yaml                                     the resolved ClipConfig
    checkpoint/                                           resumable state (see checkpoint.py)
    metrics.json                                          training figures + the final eval
"""

from __future__ import annotations

import math
import os
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import open_clip
import torch
from accelerate import Accelerator
from open_clip.loss import ClipLoss, SigLipLoss
from tqdm import tqdm

from base_models.checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from base_models.clip.config import ClipConfig
from base_models.clip.data import BatchMaker, PairSet, load_pairs
from base_models.clip.evaluate import eval_clip
from base_models.clip.lit import image_views, negative_views, view_batch, view_keys
from base_models.clip.model_io import model_config, preprocess_config, save_clip
from base_models.clip.positives import contrastive_loss
from base_models.clip.pretrain import pretrain_image_tower
from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from base_models.train_utils import (
    EpochOrder,
    check_out,
    checkpoint_due,
    lr_factor,
    make_accelerator,
    step_generator,
)


def build_model(model_cfg: dict[str, Any]) -> torch.nn.Module:
    """A randomly initialised open_clip CLIP from an architecture dict (no weights loaded)."""
    cfg = deepcopy(model_cfg)
    if cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {}):
        raise ArtalignError("only open_clip's native text tower trains here (no HF text models)")
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        raise ArtalignError("timm image towers are not supported; use a native ViT or ResNet")
    return open_clip.model.CLIP(**cfg)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: gains, biases, the logit scale/bias and embeddings' 1-D params not.

    The same split open_clip's trainer uses (ndim < 2, or names of norms, biases, logit scale).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit" in name
        (no_decay if exclude else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _loss_fn(cfg: ClipConfig, accelerator: Accelerator) -> torch.nn.Module:
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.loss == "siglip":
        return SigLipLoss(rank=rank, world_size=world)
    return ClipLoss(gather_with_grad=True, cache_labels=True, rank=rank, world_size=world)


def _model_cfg(cfg: ClipConfig) -> dict[str, Any]:
    model_cfg = model_config(cfg.model)
    if cfg.embed_dim:
        model_cfg["embed_dim"] = cfg.embed_dim
    if cfg.loss == "siglip":  # the SigLIP paper's initialisation: t' = log 10, b = -10
        model_cfg["init_logit_scale"] = math.log(10.0)
        model_cfg["init_logit_bias"] = -10.0
    return model_cfg


def _gather(features: torch.Tensor, accelerator: Accelerator) -> torch.Tensor:
    """All processes' features in rank order, with gradients to this process's own."""
    if accelerator.num_processes == 1:
        return features
    import torch.distributed.nn

    return torch.cat(torch.distributed.nn.all_gather(features))


def _masked_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    outputs: tuple,
    keys: Any,
    rows: torch.Tensor,
    negatives: torch.Tensor | None = None,
    has_negative: torch.Tensor | None = None,
) -> torch.Tensor:
    """Contrastive loss over the global batch; positives from `keys` (None: the identity)."""
    positives = torch.eye(len(rows), dtype=torch.bool) if keys is None else keys.mask(rows, rows)
    bias = outputs[3] if len(outputs) > 3 else None
    return contrastive_loss(
        image, text, positives.to(image.device), outputs[2], bias, negatives, has_negative
    )


def train_clip(cfg: ClipConfig, data: str | Path, out: str | Path, resume: bool = False) -> dict:
    """Train a CLIP on the captioned images at `data`; write the model and metrics to `out`.

    Returns the metrics: training figures plus the final zero-shot/retrieval evaluation.
    """
    cfg.validate()
    out = Path(out)
    check_out(out, resume, CHECKPOINT_DIR)
    model_cfg = _model_cfg(cfg)
    accelerator = make_accelerator(cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg)
    context = model_cfg["text_cfg"].get("context_length", 77)
    tokenizer = open_clip.get_tokenizer(cfg.model, context_length=context)
    pp = preprocess_config(model_cfg)
    pairs: PairSet = load_pairs(data, int(pp["size"]), tokenizer, max_items=cfg.max_items)
    if len(pairs) < cfg.batch_size:
        raise ArtalignError(
            f"data set {data} has {len(pairs)} items, fewer than batch_size={cfg.batch_size}; "
            f"lower it (e.g. batch_size={max(2, len(pairs) // 2)}) or use more data"
        )
    if cfg.batch_size % accelerator.num_processes:
        raise ArtalignError(
            f"batch_size={cfg.batch_size} does not split over {accelerator.num_processes} processes"
        )
    order = EpochOrder(len(pairs), cfg.batch_size, cfg.seed)
    steps_per_epoch = order.steps_per_epoch
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    batches = BatchMaker(pairs, pp["mean"], pp["std"], hflip=cfg.hflip, max_shift=cfg.max_shift)

    stages: dict[str, Any] = {}
    if cfg.pretrain_steps and not resume:
        stages = pretrain_image_tower(
            model.visual, model_cfg["embed_dim"], pairs, batches.mean, batches.std, cfg, accelerator
        )
    if cfg.lock_image:
        model.visual.requires_grad_(False)
    # fused: one kernel for all parameters; on a CPU it is ~4x faster than the per-tensor loop,
    # which matters because the 49408-row token embedding is most of the parameters.
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        fused=accelerator.device.type in ("cpu", "cuda"),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps, total)
    )
    # The scheduler stays outside prepare(): it counts global steps, which Accelerate's wrapper
    # would multiply by the number of processes.
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    loss_fn = _loss_fn(cfg, accelerator)
    start = 0
    extra = {"model_cfg": model_cfg, "config": cfg.to_dict(), "data": str(data)}
    if resume:
        meta, _ = load_checkpoint(out, raw, optimizer, scheduler)
        start = int(meta["step"])
        stages = meta.get("stages", {})
        if meta.get("model_cfg") != model_cfg:
            raise ArtalignError(
                f"--resume: {out} was trained with another model config; resume with the same"
            )
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        cfg.save_yaml(out / "train_config.yaml")
        if cfg.pretrain_steps and not resume:  # stage 1 is never repeated on --resume
            save_checkpoint(out, raw, optimizer, scheduler, 0, {**extra, "stages": stages})
    extra["stages"] = stages
    keys = view_keys(pairs) if cfg.positives == "unicl" else None
    hard = negative_views(pairs, tokenizer, cfg.seed) if cfg.swap_negatives else None
    locked = (
        image_views(raw.visual, pairs, batches.mean, batches.std, accelerator.device)
        if cfg.lock_image
        else None
    )

    per_process = cfg.batch_size // accelerator.num_processes
    rank = accelerator.process_index
    losses: list[float] = []
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(
        range(start, total),
        initial=start,
        total=total,
        desc="clip",
        unit="step",
        disable=not accelerator.is_local_main_process,
        mininterval=1.0,
    )
    for step in bar:
        index = order(step)
        mine = slice(rank * per_process, (rank + 1) * per_process)
        if (
            locked is not None
        ):  # LiT: flips drawn for the global batch, each process embeds its slice
            aug = step_generator(cfg.seed, step)
            rows, tokens = view_batch(pairs, index, cfg.hflip, aug)
            outputs = model(None, tokens[mine].to(accelerator.device))
            image_all = locked[rows].to(accelerator.device)
            text_all = _gather(outputs[1], accelerator)
            negatives = has_negative = None
            if hard is not None:
                neg_tokens = hard[0][rows[mine]].long().to(accelerator.device)
                negatives = _gather(model(None, neg_tokens)[1], accelerator)
                has_negative = hard[1][rows]
            loss = _masked_loss(image_all, text_all, outputs, keys, rows, negatives, has_negative)
        else:
            aug = step_generator(cfg.seed, step, rank)
            images, tokens, rows = batches.views(index[mine], aug)
            outputs = model(images.to(accelerator.device), tokens.to(accelerator.device))
            if keys is None:  # (image_features, text_features, logit_scale[, logit_bias])
                loss = loss_fn(*outputs)
            else:
                image_all, text_all = (
                    _gather(outputs[0], accelerator),
                    _gather(outputs[1], accelerator),
                )
                rows_all = accelerator.gather(rows.to(accelerator.device)).cpu()
                loss = _masked_loss(image_all, text_all, outputs, keys, rows_all)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():  # as open_clip: a temperature below 1/100 destabilises training
            raw.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == total:
            window = losses[-cfg.log_every :]
            bar.set_postfix(
                loss=f"{sum(window) / len(window):.3f}",
                lr=f"{scheduler.get_last_lr()[0]:.2e}",
                T=f"{raw.logit_scale.exp().item():.1f}",
            )
        done = step + 1
        if checkpoint_due(cfg.checkpoint_every, done, total):
            if accelerator.is_main_process:
                save_checkpoint(out, raw, optimizer, scheduler, done, extra)
            accelerator.wait_for_everyone()
    bar.close()
    seconds = time.perf_counter() - t0

    metrics: dict[str, Any] = {}
    if accelerator.is_main_process:
        save_checkpoint(out, raw, optimizer, scheduler, total, extra)
        notes = {
            "config": cfg.model,
            "loss": cfg.loss,
            "data_image_size": pairs.source_size,
            "lock_image": cfg.lock_image,
            "positives": cfg.positives,
            "pretrain_steps": cfg.pretrain_steps,
        }
        save_clip(raw, model_cfg, out, notes)
        steps_run = total - start
        tail = losses[-min(len(losses), max(1, steps_per_epoch)) :]
        metrics = {
            "model": cfg.model,
            "loss": cfg.loss,
            "train_items": len(pairs),
            "steps": total,
            "steps_this_run": steps_run,
            "epochs": round(total / steps_per_epoch, 3),
            "batch_size": cfg.batch_size,
            "final_loss": sum(tail) / len(tail) if tail else None,
            "logit_scale": float(raw.logit_scale.detach().exp()),
            **stages,
            "lock_image": cfg.lock_image,
            "positives": cfg.positives,
            "train_seconds": round(seconds, 2),
            "steps_per_second": round(steps_run / seconds, 4) if seconds > 0 else None,
            "images_per_second": round(steps_run * cfg.batch_size / seconds, 1)
            if seconds > 0
            else None,
            "torch_threads": torch.get_num_threads(),
            "processes": accelerator.num_processes,
            "device": str(accelerator.device),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        if cfg.eval_n > 0:
            raw.eval()
            metrics.update(
                eval_clip(
                    str(out), out, n=cfg.eval_n, size=pairs.source_size, n_binding=cfg.eval_n // 2
                )
            )
        write_json(out / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return metrics
