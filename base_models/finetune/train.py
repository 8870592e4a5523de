"""`artalign base finetune-style`: bind a style to a trigger token with LoRA, DreamBooth or TI.

Per step: draw batch_size style images -> sample each latent from its cached VAE posterior ->
noise at a uniform timestep of the model's own schedule (a DDPMScheduler rebuilt from the SD
folder's scheduler config, as diffusers' scripts do) -> the UNet predicts ε or v from x_t and the
trigger caption's states -> MSE (optionally min-SNR-γ weighted) -> AdamW (warmup, cosine).

- lora: peft LoRA on the UNet's attention projections; the base model stays frozen.
- dreambooth: the same LoRA, plus prior preservation (Ruiz et al. 2023): each step also draws
  batch_size class images (the base model's images of the captions without the style) with their
  class prompts, in the same UNet forward; loss = instance loss + prior_loss_weight x class loss.
- textual-inversion (Gal et al. 2022): one new token whose embedding row is the only thing that
  trains; after each step every other row is put back, so weight decay cannot touch them.

Out folder (each file written atomically):
    pytorch_lora_weights.safetensors   lora, dreambooth: `pipe.load_lora_weights(OUT)`,
                                       `artalign generate --model SD --lora OUT`
    learned_embeds.safetensors         textual-inversion: `pipe.load_textual_inversion(FILE)`,
                                       `artalign generate --model SD --embedding FILE`
    class_images/                      dreambooth: the class images (a cache reused by reruns)
    samples.png, finetune_config.yaml, metrics.json
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from base_models.errors import ArtalignError
from base_models.finetune import embeddings
from base_models.finetune.config import FinetuneConfig
from base_models.finetune.data import (
    CLASS_DIR,
    ClassImages,
    StyleData,
    class_images,
    load_style_data,
)
from base_models.generator import Generator, check_sd_folder, lora_config
from base_models.generator import lora as lora_lib
from base_models.imaging import make_grid
from base_models.io_utils import atomic_path, write_json
from base_models.train_utils import EpochOrder, lr_factor, make_accelerator, step_generator
from base_models.unet import losses
from base_models.unet.latents import caption_bank, sample_latents

METHODS = ("lora", "dreambooth", "textual-inversion")
DEFAULT_TOKENS = {"lora": "sks", "dreambooth": "sks", "textual-inversion": "<sks>"}
WEIGHT_FILES = {
    "lora": lora_lib.LORA_FILE,
    "dreambooth": lora_lib.LORA_FILE,
    "textual-inversion": embeddings.EMBEDDING_FILE,
}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ArtalignError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


@dataclass
class TrainResult:
    """Per-step losses of a run (prior losses only for DreamBooth) and what trained."""

    losses: list[float] = field(default_factory=list)
    instance_losses: list[float] = field(default_factory=list)
    prior_losses: list[float] = field(default_factory=list)
    trainable_parameters: int = 0
    token_id: int | None = None  # the new token's row (textual inversion)
    seconds: float = 0.0


def _noise_schedule(gen: Generator) -> Any:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(gen.ddim.scheduler.config)
    if sched.config.prediction_type not in losses.PREDICTION_TYPES:
        raise ArtalignError(
            f"{gen.path}: prediction_type {sched.config.prediction_type!r} cannot be fine-tuned "
            f"here; supported: {', '.join(losses.PREDICTION_TYPES)}"
        )
    return sched


def train_style(
    gen: Generator,
    method: str,
    token: str,
    data: StyleData,
    cfg: FinetuneConfig,
    classes: ClassImages | None = None,
    accelerator: Any = None,
) -> TrainResult:
    """Train `gen` in place: attach a LoRA (lora, dreambooth) or add `token` (textual-inversion)
    and fit it to `data`. `data.captions` must already hold `token` (load_style_data)."""
    check_method(method)
    if accelerator is None:
        accelerator = make_accelerator(cfg.mixed_precision)
    if method == "dreambooth" and classes is None:
        raise ArtalignError("dreambooth needs class images; pass classes=class_images(...)")
    sizes = {"style images": len(data), "class images": len(classes.prompts) if classes else None}
    for name, n in sizes.items():
        if n is not None and n < cfg.batch_size:
            raise ArtalignError(
                f"{n} {name}, fewer than batch_size={cfg.batch_size}; lower "
                "batch_size or add images"
            )
    device = accelerator.device
    result = TrainResult()
    ti = method == "textual-inversion"
    if ti:
        result.token_id = embeddings.add_token(
            gen.tokenizer, gen.text_encoder, token, cfg.init_word
        )
        table = gen.text_encoder.get_input_embeddings().weight
        kept = table.detach().clone()
        others = torch.ones(len(table), dtype=torch.bool, device=table.device)
        others[result.token_id] = False
        table.requires_grad_(True)
        params, lr = [table], cfg.embedding_lr
        result.trainable_parameters = table.shape[1]
        ids = gen.tokenizer(
            data.captions,
            padding="max_length",
            truncation=True,
            max_length=gen.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids
    else:
        torch.manual_seed(cfg.seed)  # the LoRA down-projections' initialisation
        gen.attach_lora(lora_config(cfg.rank, cfg.lora_alpha or None))
        params, lr = gen.lora_parameters(), cfg.lr
        result.trainable_parameters = sum(p.numel() for p in params)
        bank = caption_bank(gen.text_encoder, gen.tokenizer, data.captions)
    if classes is not None:
        class_bank = caption_bank(gen.text_encoder, gen.tokenizer, classes.prompts)

    sched = _noise_schedule(gen)
    pred_type, alphas = sched.config.prediction_type, sched.alphas_cumprod
    scale = float(gen.vae.config.scaling_factor)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps)
    )
    optimizer = accelerator.prepare(optimizer)  # the fp16 loss scaler, when there is one
    order = EpochOrder(len(data), cfg.batch_size, cfg.seed)
    class_order = (
        EpochOrder(len(classes.prompts), cfg.batch_size, cfg.seed + 1) if classes else None
    )
    gen.unet.train()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.max_steps), desc=method, unit="step", mininterval=1.0)
    for step in bar:
        gen_step = step_generator(cfg.seed, step)
        index = order(step)
        x0 = sample_latents(data.posteriors[index], scale, gen_step)
        if class_order is not None:
            cindex = class_order(step)
            x0 = torch.cat([x0, sample_latents(classes.posteriors[cindex], scale, gen_step)])
        noise = torch.randn(x0.shape, generator=gen_step)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),), generator=gen_step)
        noisy = sched.add_noise(x0, noise, t)
        target = losses.training_target(pred_type, alphas, x0, noise, t).to(device)
        weights = losses.min_snr_weights(losses.snr(alphas, t), cfg.snr_gamma, pred_type)
        weights = weights.to(device)
        with accelerator.autocast():
            if ti:  # (B, T, D) with gradients into the token table
                states = gen.text_encoder(ids[index].to(device))[0]
            else:
                states = bank.states[bank.index[index]].to(device)
            if class_order is not None:
                cstates = class_bank.states[class_bank.index[cindex]].to(device, states.dtype)
                states = torch.cat([states, cstates])
            pred = gen.unet(noisy.to(device), t.to(device), encoder_hidden_states=states).sample
        n = len(index)
        loss = instance = losses.diffusion_loss(pred[:n], target[:n], weights[:n])
        if class_order is not None:
            prior = losses.diffusion_loss(pred[n:], target[n:], weights[n:])
            loss = instance + cfg.prior_loss_weight * prior
            result.prior_losses.append(prior.item())
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        lr_sched.step()
        if ti:  # only the new token's row may change
            with torch.no_grad():
                table[others] = kept[others]
        result.losses.append(loss.item())
        result.instance_losses.append(instance.item())
        if (step + 1) % cfg.log_every == 0:
            window = result.losses[-cfg.log_every :]
            bar.set_postfix(loss=f"{sum(window) / len(window):.4f}")
    bar.close()
    gen.unet.eval()
    for p in params:
        p.requires_grad_(False)
    result.seconds = time.perf_counter() - t0
    return result


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    held = sorted(p.name for p in out.iterdir() if p.name != CLASS_DIR) if out.is_dir() else []
    if held and not overwrite:
        raise ArtalignError(
            f"--out {out} already holds {held[0]}; pass --overwrite to replace the run "
            f"({CLASS_DIR}/ is kept as a cache)"
        )


def _save_lora_file(unet: Any, out: Path) -> None:
    """Put the LoRA file into `out` by a rename: save_lora writes a whole folder."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=".lora.", dir=out))
    try:
        lora_lib.save_lora(unet, tmp / "lora")
        (tmp / "lora" / lora_lib.LORA_FILE).replace(out / lora_lib.LORA_FILE)
    finally:
        shutil.rmtree(tmp)


def _mean_tail(values: list[float], n: int = 25) -> float | None:
    tail = values[-min(len(values), n) :]
    return sum(tail) / len(tail) if tail else None


def finetune_style(
    cfg: FinetuneConfig,
    method: str,
    model: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    token: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune the SD folder `model` on the style images in `data_dir`; write the adapter
    (see the module docstring) and metrics to `out_dir`; return the metrics."""
    cfg.validate()
    check_method(method)
    token = token or DEFAULT_TOKENS[method]
    if not token.strip() or any(c.isspace() for c in token):
        raise ArtalignError(f"--token {token!r} must be one word without spaces, e.g. sks")
    out = Path(out_dir)
    _check_out(out, overwrite)
    check_sd_folder(model)
    accelerator = make_accelerator(cfg.mixed_precision)
    if accelerator.num_processes > 1:
        raise ArtalignError("finetune-style runs in one process; launch it without torchrun")
    gen = Generator.from_folder(model, device=accelerator.device)
    if method == "textual-inversion":
        embeddings.check_new_token(gen.tokenizer, token)
    data = load_style_data(data_dir, gen, token, cfg.image_size, cfg.max_items)
    if len(data) < cfg.batch_size:
        raise ArtalignError(
            f"data set {data_dir} has {len(data)} images, fewer than batch_size="
            f"{cfg.batch_size}; lower batch_size or add images"
        )
    out.mkdir(parents=True, exist_ok=True)
    classes = None
    if method == "dreambooth":
        if cfg.n_class_images < cfg.batch_size:
            raise ArtalignError(
                f"n_class_images={cfg.n_class_images} is below batch_size="
                f"{cfg.batch_size}; raise n_class_images"
            )
        classes = class_images(
            gen,
            data,
            out / CLASS_DIR,
            cfg.n_class_images,
            steps=cfg.class_steps,
            guidance=cfg.class_guidance,
            seed=cfg.seed,
        )
    result = train_style(gen, method, token, data, cfg, classes, accelerator)

    weight_file = out / WEIGHT_FILES[method]
    if method == "textual-inversion":
        table = gen.text_encoder.get_input_embeddings().weight
        embeddings.save_embedding(weight_file, token, table[result.token_id])
    else:
        _save_lora_file(gen.unet, out)
    for other in set(WEIGHT_FILES.values()) - {weight_file.name}:  # a former run's, if any
        (out / other).unlink(missing_ok=True)
    sample_seconds = 0.0
    if cfg.sample_n:
        ts = time.perf_counter()
        prompts = list(dict.fromkeys(data.captions))[: cfg.sample_n]
        images = gen.sample(
            prompts, cfg.seed, steps=cfg.sample_steps, guidance=cfg.sample_guidance
        ).images
        with atomic_path(out / "samples.png") as tmp:
            make_grid(images, scale=max(1, 128 // data.size)).save(tmp, format="PNG")
        sample_seconds = time.perf_counter() - ts
    cfg.save_yaml(out / "finetune_config.yaml")
    steps = len(result.losses)
    every = cfg.log_every
    metrics: dict[str, Any] = {
        "method": method,
        "token": token,
        "model": str(model),
        "data": str(data_dir),
        "weights": weight_file.name,
        "example_caption": data.captions[0],
        "train_items": len(data),
        "image_size": data.size,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "trainable_parameters": result.trainable_parameters,
        "first_loss": result.losses[0],
        "final_loss": _mean_tail(result.losses),
        "loss_curve": [
            {"step": s + every, "loss": sum(result.losses[s : s + every]) / every}
            for s in range(0, steps - every + 1, every)
        ],
        "train_seconds": round(result.seconds, 2),
        "seconds_per_step": round(result.seconds / steps, 4),
        "sample_seconds": round(sample_seconds, 2),
        "torch_threads": torch.get_num_threads(),
        "device": str(accelerator.device),
    }
    if classes is not None:
        metrics.update(
            {
                "final_instance_loss": _mean_tail(result.instance_losses),
                "final_prior_loss": _mean_tail(result.prior_losses),
                "class_images": len(classes.prompts),
                "class_images_generated": classes.generated,
                "class_seconds": round(classes.seconds, 2),
            }
        )
    metrics["config"] = cfg.to_dict()
    write_json(out / "metrics.json", metrics)
    return metrics
