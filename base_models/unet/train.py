"""`artalign base train-unet`: DDPM training of a latent UNet, the way SD was trained.

Per step: draw a batch of items -> sample each latent from its cached VAE posterior (times the
VAE's scaling factor) -> replace captions by "" with probability caption_dropout -> noise at a
uniform timestep of the DDPM schedule -> the UNet predicts ε or v from x_t and the caption's
per-token CLIP states -> min-SNR-γ weighted MSE -> AdamW (warmup, cosine) -> EMA update.
With train_text_encoder the caption states are recomputed from token ids every step and the text
encoder trains with the UNet (its weights are averaged by the same EMA and saved in the folder).
Gradient accumulation splits the batch into grad_accum micro-batches. All randomness of a step
comes from a generator seeded by (seed, step), so a resumed run repeats an uninterrupted one.

Out folder (a Stable Diffusion folder, see output.py):
    model_index.json, unet/ (EMA weights), vae/, text_encoder/, tokenizer/, scheduler/ (DDIM)
    train_config.yaml, metrics.json, samples.png, logs/ (TensorBoard), checkpoint/
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from base_models.checkpoint import load_checkpoint, save_checkpoint
from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, write_json
from base_models.train_utils import (
    EpochOrder,
    check_out,
    checkpoint_due,
    lr_factor,
    make_accelerator,
    step_generator,
)
from base_models.unet import losses
from base_models.unet.config import UNetConfig
from base_models.unet.latents import CaptionBank, caption_bank, encode_posteriors, sample_latents
from base_models.unet.model import build_unet, noise_scheduler, sampling_scheduler, scheduler_dict
from base_models.unet.output import ema_meta, ema_tensors, load_ema, sample_grid, save_sd_folder
from base_models.vae.data import load_images
from base_models.vae.evaluate import load_vae
from base_models.vae.train import plain_config

TEXT_PREFIX = "text_encoder."  # checkpoint tensors of a text encoder that trains


@dataclass
class Inputs:
    """The frozen parts and everything precomputed from them."""

    vae: Any
    text_encoder: Any
    tokenizer: Any
    posteriors: torch.Tensor  # (N, 2C, h, w)
    captions: CaptionBank
    prompts: list[str]  # of the sample grids
    single: torch.Tensor  # indices of the single-object items (the curriculum's first phase)

    def checksum(self) -> float:
        """A fingerprint of the conditioning, so --resume refuses another VAE, CLIP or data."""
        return float(self.posteriors.double().mean() + self.captions.states.double().mean())


def _prepare_inputs(cfg: UNetConfig, data_dir, vae_dir, clip_dir, out: Path, accelerator) -> Inputs:
    from transformers import CLIPTextModel, CLIPTokenizer

    from base_models.text_encoder import export_text_encoder  # lazy: open_clip

    vae = load_vae(vae_dir, accelerator.device)
    if not Path(clip_dir).is_dir():
        raise ArtalignError(f"CLIP folder {clip_dir} does not exist; train one with train-clip")
    size = cfg.image_size or int(vae.config.sample_size)
    images = load_images(data_dir, size, cfg.max_items)
    if len(images) < cfg.batch_size:
        raise ArtalignError(
            f"data set {data_dir} has {len(images)} items, fewer than batch_size="
            f"{cfg.batch_size}; lower batch_size or use more data"
        )
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:  # the SD folder's text_encoder/ and tokenizer/
        export_text_encoder(clip_dir, out)
    accelerator.wait_for_everyone()
    text_encoder = CLIPTextModel.from_pretrained(out / "text_encoder", local_files_only=True)
    if cfg.text_encoder_init == "scratch":  # the tower's shape and tokenizer, fresh weights
        torch.manual_seed(cfg.seed)  # (loaded in place: the saved file keeps SD's key names)
        text_encoder.load_state_dict(CLIPTextModel(text_encoder.config).state_dict())
    text_encoder = text_encoder.to(accelerator.device).eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer", local_files_only=True)
    posteriors = encode_posteriors(vae, images.pixels)
    captions = caption_bank(text_encoder, tokenizer, images.texts)
    prompts = list(dict.fromkeys(t for t in images.texts if t))[: cfg.sample_n]
    single = torch.tensor(
        [i for i, a in enumerate(images.attrs) if a.get("count") == 1], dtype=torch.long
    )
    return Inputs(vae, text_encoder, tokenizer, posteriors, captions, prompts, single)


@dataclass
class Batch:
    noisy: torch.Tensor  # x_t (B, C, h, w)
    timesteps: torch.Tensor  # (B,)
    states: torch.Tensor  # caption states (B, T, D), of the frozen text encoder
    ids: torch.Tensor  # caption token ids (B, T), for a text encoder that trains
    target: torch.Tensor  # ε or v (B, C, h, w)
    weights: torch.Tensor  # min-SNR-γ weights (B,)


def make_batch(
    cfg: UNetConfig, inputs: Inputs, scheduler: Any, index: torch.Tensor, gen: torch.Generator
) -> Batch:
    """One micro-batch of items `index`, all randomness drawn from `gen` (on the CPU)."""
    scale = float(inputs.vae.config.scaling_factor)
    x0 = sample_latents(inputs.posteriors[index], scale, gen)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, cfg.num_train_timesteps, (len(index),), generator=gen)
    bank = inputs.captions
    rows = losses.drop_captions(bank.index[index], bank.empty, cfg.caption_dropout, gen)
    alphas = scheduler.alphas_cumprod
    return Batch(
        noisy=scheduler.add_noise(x0, noise, t),
        timesteps=t,
        states=bank.states[rows],
        ids=bank.ids[rows],
        target=losses.training_target(cfg.prediction_type, alphas, x0, noise, t),
        weights=losses.min_snr_weights(losses.snr(alphas, t), cfg.snr_gamma, cfg.prediction_type),
    )


def _ema_copy(
    raw: UNet2DConditionModel, text_encoder: Any, ema: EMAModel | None, tune_text: bool
) -> tuple[UNet2DConditionModel, Any]:
    """Separate (UNet, text encoder) holding the EMA weights (or the raw ones), eval mode.

    The EMA tracks the UNet's parameters, then the text encoder's when it trains; a frozen text
    encoder is returned as it is.
    """
    unet = UNet2DConditionModel.from_config(raw.config).to(raw.device)
    unet.load_state_dict(raw.state_dict())
    text = copy.deepcopy(text_encoder) if tune_text else text_encoder
    if ema is not None:
        ema.copy_to(list(unet.parameters()) + (list(text.parameters()) if tune_text else []))
    return unet.eval().requires_grad_(False), text.eval().requires_grad_(False)


def train_unet(
    cfg: UNetConfig,
    data_dir: str | Path,
    vae_dir: str | Path,
    clip_dir: str | Path,
    out_dir: str | Path,
    resume: bool = False,
) -> dict[str, Any]:
    """Train a latent UNet on `data_dir` with a frozen VAE and CLIP text tower.

    `vae_dir`: train-vae's --out (or its vae/, or an SD folder); `clip_dir`: train-clip's --out.
    Writes an SD folder and metrics to `out_dir`; returns the metrics.
    """
    cfg.validate()
    out = Path(out_dir)
    check_out(out, resume)
    accelerator = make_accelerator(cfg.mixed_precision)
    procs, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % (procs * cfg.grad_accum):
        raise ArtalignError(
            f"batch_size={cfg.batch_size} does not split into grad_accum="
            f"{cfg.grad_accum} micro-batches on {procs} processes"
        )
    inputs = _prepare_inputs(cfg, data_dir, vae_dir, clip_dir, out, accelerator)
    latent_size = inputs.posteriors.shape[-1]
    torch.manual_seed(cfg.seed)
    unet = build_unet(
        cfg, inputs.text_encoder.config.hidden_size, latent_size, inputs.posteriors.shape[1] // 2
    )
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    train_sched = noise_scheduler(cfg)
    ddim = sampling_scheduler(train_sched)
    tune_text = cfg.train_text_encoder
    text_encoder = inputs.text_encoder.train(tune_text).requires_grad_(tune_text)
    groups = [{"params": list(unet.parameters())}]
    if tune_text:
        groups.append(
            {
                "params": list(text_encoder.parameters()),
                "lr": cfg.text_encoder_lr or cfg.lr,
                "weight_decay": 0.0,
            }
        )
    optimizer = torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=accelerator.device.type in ("cpu", "cuda"),
    )
    total = cfg.max_steps
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps, total)
    )
    if tune_text:
        model, text_model, optimizer = accelerator.prepare(unet, text_encoder, optimizer)
        text_encoder = accelerator.unwrap_model(text_model)
    else:
        model, optimizer = accelerator.prepare(unet, optimizer)
        text_model = None
    raw = accelerator.unwrap_model(model)
    ema = None
    tracked = list(raw.parameters()) + (list(text_encoder.parameters()) if tune_text else [])
    if cfg.ema_decay > 0:
        ema = EMAModel(
            tracked, decay=cfg.ema_decay, use_ema_warmup=True, power=cfg.ema_power, foreach=True
        )
    start = 0
    extra = {
        "unet_config": plain_config(raw),
        "config": cfg.to_dict(),
        "data": str(data_dir),
        "vae": str(vae_dir),
        "clip": str(clip_dir),
        "inputs_checksum": inputs.checksum(),
    }
    if resume:
        _check_same_text_setting(out, tune_text)
        meta, tensors = load_checkpoint(out, raw, optimizer, lr_sched)
        start = int(meta["step"])
        if tune_text:
            text_encoder.load_state_dict(
                {
                    k[len(TEXT_PREFIX) :]: v.to(accelerator.device)
                    for k, v in tensors.items()
                    if k.startswith(TEXT_PREFIX)
                }
            )
        if meta.get("unet_config") != extra["unet_config"]:
            raise ArtalignError(
                f"--resume: {out} was trained with another UNet shape; resume with the same config"
            )
        if not np.isclose(meta.get("inputs_checksum", np.nan), extra["inputs_checksum"]):
            raise ArtalignError(
                f"--resume: {out} was trained on other data, VAE or CLIP; "
                "pass the same --data, --vae and --clip"
            )
        if ema is not None:
            load_ema(ema, meta["ema"], tensors)
    if accelerator.is_main_process:
        cfg.save_yaml(out / "train_config.yaml")
    writer = None
    if accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "logs"), purge_step=start if resume else None)

    order = EpochOrder(len(inputs.posteriors), cfg.batch_size, cfg.seed)
    early = None  # the curriculum's order over single-object items
    curriculum_steps = round(cfg.curriculum * cfg.max_steps)
    if curriculum_steps and len(inputs.single) >= cfg.batch_size:
        early = EpochOrder(len(inputs.single), cfg.batch_size, cfg.seed)
    per_process = cfg.batch_size // procs
    micro = per_process // cfg.grad_accum
    device = accelerator.device
    losses_seen: list[float] = []
    grid, sample_seconds = None, 0.0
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(
        range(start, total),
        initial=start,
        total=total,
        desc="unet",
        unit="step",
        disable=not accelerator.is_local_main_process,
        mininterval=1.0,
    )
    for step in bar:
        in_curriculum = early is not None and step < curriculum_steps
        batch = inputs.single[early(step)] if in_curriculum else order(step)
        index = batch[rank * per_process : (rank + 1) * per_process]
        gen = step_generator(cfg.seed, step, rank)
        optimizer.zero_grad(set_to_none=True)
        chunks = index.split(micro)
        step_loss = 0.0
        for k, chunk in enumerate(chunks):
            b = make_batch(cfg, inputs, train_sched, chunk, gen)
            sync = k == len(chunks) - 1
            with nullcontext() if sync else accelerator.no_sync(model):
                states = text_model(b.ids.to(device))[0] if tune_text else b.states.to(device)
                pred = model(
                    b.noisy.to(device), b.timesteps.to(device), encoder_hidden_states=states
                ).sample
                loss = losses.diffusion_loss(pred, b.target.to(device), b.weights.to(device))
                accelerator.backward(loss / len(chunks))
            step_loss += loss.item() / len(chunks)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip
            )
        optimizer.step()
        lr_sched.step()
        if ema is not None:
            ema.step(
                list(raw.parameters()) + (list(text_encoder.parameters()) if tune_text else [])
            )
        losses_seen.append(step_loss)
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            window = losses_seen[-cfg.log_every :]
            lr = lr_sched.get_last_lr()[0]
            bar.set_postfix(loss=f"{sum(window) / len(window):.4f}", lr=f"{lr:.1e}")
            if writer is not None:
                writer.add_scalar("train/loss", sum(window) / len(window), done)
                writer.add_scalar("train/lr", lr, done)
        sample_now = cfg.sample_every and (done % cfg.sample_every == 0 or done == total)
        if writer is not None and sample_now:
            ts = time.perf_counter()
            unet_now, text_now = _ema_copy(raw, text_encoder, ema, tune_text)
            grid = sample_grid(
                unet_now,
                inputs.vae,
                text_now,
                inputs.tokenizer,
                scheduler_dict(ddim),
                inputs.prompts,
                cfg.sample_steps,
                cfg.sample_guidance,
                out,
            )
            writer.add_image("samples", np.asarray(grid), done, dataformats="HWC")
            sample_seconds += time.perf_counter() - ts
        if checkpoint_due(cfg.checkpoint_every, done, total):
            if accelerator.is_main_process:
                _checkpoint(
                    out,
                    raw,
                    text_encoder if tune_text else None,
                    optimizer,
                    lr_sched,
                    done,
                    extra,
                    ema,
                )
            accelerator.wait_for_everyone()
    bar.close()
    seconds = time.perf_counter() - t0

    metrics: dict[str, Any] = {}
    if accelerator.is_main_process:
        _checkpoint(
            out, raw, text_encoder if tune_text else None, optimizer, lr_sched, total, extra, ema
        )
        unet_final, text_final = _ema_copy(raw, text_encoder, ema, tune_text)
        save_sd_folder(out, unet_final, inputs.vae, text_final, inputs.tokenizer, ddim)
        if grid is not None:
            with atomic_path(out / "samples.png") as tmp:
                grid.save(tmp, format="PNG")
        writer.close()
        steps_run = total - start
        tail = losses_seen[-min(len(losses_seen), 100) :]
        metrics = {
            "steps": total,
            "steps_this_run": steps_run,
            "batch_size": cfg.batch_size,
            "grad_accum": cfg.grad_accum,
            "images_seen": total * cfg.batch_size,
            "train_items": len(inputs.posteriors),
            "distinct_captions": len(inputs.captions.texts) - 1,
            "final_loss": sum(tail) / len(tail) if tail else None,
            "prediction_type": cfg.prediction_type,
            "train_text_encoder": tune_text,
            "unet_parameters": sum(p.numel() for p in raw.parameters()),
            "latent_shape": [inputs.posteriors.shape[1] // 2, latent_size, latent_size],
            "train_seconds": round(seconds, 2),
            "sample_seconds": round(sample_seconds, 2),
            "seconds_per_step": round((seconds - sample_seconds) / steps_run, 4)
            if steps_run
            else None,
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
        }
        write_json(out / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return metrics


def _check_same_text_setting(out: Path, tune_text: bool) -> None:
    """Refuse to resume a run with train_text_encoder switched (before any state is loaded)."""
    state = out / "checkpoint" / "state.json"
    if not state.is_file():
        return  # load_checkpoint explains a missing checkpoint
    saved = json.loads(state.read_text()).get("config", {}).get("train_text_encoder", False)
    if saved != tune_text:
        raise ArtalignError(
            f"--resume: {out} was trained with train_text_encoder={saved}; "
            "resume with the same setting"
        )


def _checkpoint(out, raw, text_encoder, optimizer, lr_sched, step, extra, ema) -> None:
    """The UNet as the checkpoint's model; EMA and a training text encoder as extra tensors."""
    more = {"ema": ema_meta(ema)} if ema is not None else {}
    tensors = ema_tensors(ema) if ema is not None else {}
    if text_encoder is not None:
        tensors.update(
            {
                f"{TEXT_PREFIX}{k}": v.detach().cpu().contiguous()
                for k, v in text_encoder.state_dict().items()
            }
        )
    save_checkpoint(out, raw, optimizer, lr_sched, step, {**extra, **more}, tensors or None)
