"""`train_dpo`: Diffusion-DPO (Wallace et al. 2023) with a LoRA on the UNet, offline from pairs.

Per micro-batch of (winner, loser) latent pairs with their prompts' text states:
    draw one noise ε and one timestep t per pair, shared by winner and loser
    -> x_t of both (the scheduler's add_noise) -> the LoRA model's per-sample mean squared error
    against the target (ε, or v for v-prediction) -> the same for the reference, which is the
    same UNet with the adapters switched off (no second model in memory), without gradients
    -> `diffusion_dpo_loss` (β, pair weights) -> backward; `grad_accum` micro-batches make one
    AdamW step on the LoRA weights only, with gradient clipping, under Accelerate.
The pair order and each micro-batch's noise and timesteps are pure functions of (seed, step),
so a resumed run sees what an uninterrupted one would have.

Out folder (docs/alignment.md):
    lora/ (diffusers format), best/ (with the guard), checkpoint/, train_config.yaml,
    log.jsonl (a line per step: loss, implicit_acc, margin, implicit_reward, lr, grad_norm),
    metrics.json, samples.png (top row base, bottom row aligned, held-out prompts, same seeds).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.generator import Generator, check_sd_folder, lora_config
from base_models.imaging import make_grid
from base_models.io_utils import atomic_path, write_json, write_text
from base_models.train_utils import EpochOrder, check_out, lr_factor, make_accelerator
from rlhf.align import checkpoint
from rlhf.align import guard as guard_lib
from rlhf.align.dpo_config import DPOConfig
from rlhf.align.dpo_data import DPOData, PairTensors, build_dpo_data, read_preferences
from rlhf.align.finite import NonFinite, check_finite, stop_message
from rlhf.align.losses import diffusion_dpo_loss
from rlhf.align.processes import any_process, average_gradients, local_rows, mean_figures
from rlhf.align.run_files import append_log, save_adapters

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- one batch
def diffusion_target(
    scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What the UNet regresses for the scheduler's prediction type: ε, v or x0."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ArtalignError(f"prediction_type {kind!r} cannot be trained with DPO here")


def noised_pairs(
    scheduler: Any, x_w: torch.Tensor, x_l: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise winners (B, C, h, w) and losers alike: one ε and one t per pair, shared.

    Returns (x_t (2B, ...) winners then losers, t (2B,), target (2B, ...)).
    """
    n = x_w.shape[0]
    noise = torch.randn(x_w.shape, generator=generator).to(x_w.device, x_w.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator)
    t = t.to(x_w.device)
    x0, noise2, t2 = torch.cat([x_w, x_l]), torch.cat([noise, noise]), torch.cat([t, t])
    return scheduler.add_noise(x0, noise2, t2), t2, diffusion_target(scheduler, x0, noise2, t2)


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample (N,), in float32."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def pair_errors(
    generator: Any,
    data: DPOData,
    items: PairTensors,
    noise_gen: torch.Generator | None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """(model_err_w, model_err_l, ref_err_w, ref_err_l), each (B,); the model's keep gradients.

    The reference is the same UNet with the adapters switched off, run without gradients.
    Noise and timesteps are drawn for all of `items`; with `rows` (this process's share of the
    batch) only those pairs go through the UNet, so the split does not change any pair's noise.
    """
    device, dtype = generator.device, generator.dtype
    x_w = data.latents[items.winner].to(device, dtype)
    x_l = data.latents[items.loser].to(device, dtype)
    x_t, t, target = noised_pairs(generator.ddim.scheduler, x_w, x_l, noise_gen)
    if rows is not None:
        keep = torch.cat([rows, rows + len(items)]).to(x_t.device)
        x_t, t, target, items = x_t[keep], t[keep], target[keep], items.take(rows)
    states = data.embeds[items.prompt].to(device, dtype)
    states = torch.cat([states, states])
    n = len(items)
    err = per_sample_error(generator.unet(x_t, t, encoder_hidden_states=states).sample, target)
    with torch.no_grad(), generator.lora_disabled():
        ref = per_sample_error(generator.unet(x_t, t, encoder_hidden_states=states).sample, target)
    return err[:n], err[n:], ref[:n], ref[n:]


def batch_loss(
    generator: Any,
    data: DPOData,
    items: PairTensors,
    beta: float,
    noise_gen: torch.Generator | None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted DPO loss of a batch (or of its `rows`, see `pair_errors`) and its figures
    (implicit_acc over decisive pairs)."""
    mw, ml, rw, rl = pair_errors(generator, data, items, noise_gen, rows)
    if rows is not None:
        items = items.take(rows)
    weight = items.weight.to(mw.device)
    loss, info = diffusion_dpo_loss(mw, ml, rw, rl, beta, weight)
    decisive = ~items.tie.to(mw.device)
    if items.tie.any() and decisive.any():  # a tie's two orders would score 1 - acc: leave out
        _, info = diffusion_dpo_loss(
            mw[decisive].detach(), ml[decisive].detach(), rw[decisive], rl[decisive], beta
        )
    figures = {
        "loss": loss.item(),
        "implicit_acc": info["implicit_acc"].item(),
        "margin": info["margin"].item(),
    }
    figures["implicit_reward"] = -0.5 * beta * figures["margin"]
    return loss, figures


@torch.no_grad()
def heldout_figures(
    generator: Any, data: DPOData, beta: float, seed: int, batch_size: int
) -> dict[str, float]:
    """DPO loss and implicit accuracy on the held-out pairs, with fixed noise and timesteps."""
    n = len(data.heldout)
    if n == 0:
        return {}
    noise_gen = torch.Generator().manual_seed(seed + 1_234_567)
    totals = {"loss": 0.0, "implicit_acc": 0.0, "margin": 0.0}
    for start in range(0, n, batch_size):
        items = data.heldout.take(torch.arange(start, min(n, start + batch_size)))
        mw, ml, rw, rl = pair_errors(generator, data, items, noise_gen)
        loss, info = diffusion_dpo_loss(mw, ml, rw, rl, beta)
        for key, value in (("loss", loss), *info.items()):
            totals[key] += float(value) * len(items)
    return {f"heldout_{k}": v / n for k, v in totals.items()}


# ----------------------------------------------------------------------------- the run
def _lr_lambda(cfg: DPOConfig) -> Callable[[int], float]:
    if cfg.lr_schedule == "cosine":
        return lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps)
    return lambda s: min(1.0, (s + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


def _noise_seed(seed: int, micro: int) -> int:
    return seed * 7_919 + micro * 104_729 + 17


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines after `step` (a resumed run rewrites them)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if json.loads(ln)["step"] <= step]
        write_text(path, "".join(ln + "\n" for ln in keep))


def save_samples(generator: Any, prompts: list[str], cfg: DPOConfig, path: Path) -> None:
    """A grid of base (top row) and aligned (bottom row) samples of `prompts`, same seeds."""
    prompts = [p for p in prompts for _ in range(cfg.sample_seeds)]
    seeds = list(range(len(prompts)))
    kw = {"steps": cfg.sample_steps, "guidance": cfg.sample_guidance, "eta": 0.0}
    with generator.lora_disabled():
        base = generator.sample(prompts, seeds, **kw).images
    aligned = generator.sample(prompts, seeds, **kw).images
    scale = max(1, 96 // base[0].size[0])
    with atomic_path(path) as tmp:
        make_grid(base + aligned, ncols=len(prompts), scale=scale).save(tmp, format="PNG")


def _make_guard(cfg: DPOConfig, generator: Any, data: DPOData, out: Path) -> Any:
    if cfg.guard_prompts is None:  # default: the held-out split's prompts
        if not data.heldout_prompts:
            raise ArtalignError(
                "guard_every > 0 needs held-out prompts: set heldout_frac > 0 "
                "or guard_prompts to a prompts file"
            )
        path = out / "heldout_prompts.txt"
        write_text(path, "\n".join(data.heldout_prompts) + "\n")
        cfg = dataclasses.replace(cfg, guard_prompts=str(path))
    return guard_lib.Guard(cfg, generator)  # looked up here, so a test can stand in a fake


def train_dpo(
    cfg: DPOConfig, out: str | Path, resume: bool = False, log: Log | None = print
) -> dict[str, Any]:
    """Train a LoRA on `cfg.model` with Diffusion-DPO on the pairs in `cfg.pairs`; write `out`.

    With `resume`, continue the run in `out` from its checkpoint (adapters, optimizer, step,
    RNG), else refuse an `out` that already holds a run. Returns the final metrics.
    """
    say = log or (lambda _: None)
    cfg.validate()
    out = Path(out)
    check_out(out, resume)
    if resume and not checkpoint.has_checkpoint(out):
        raise ArtalignError(
            f"--resume: no checkpoint in {out / checkpoint.CHECKPOINT_DIR}; "
            "start without --resume, or pass the --out of an earlier run"
        )
    if cfg.pairs is None:
        raise ArtalignError("no preference data: pass --db STORE or --pairs FILE")
    check_sd_folder(cfg.model)
    prefs = read_preferences(cfg.pairs, cfg, batch=cfg.data_batch)  # bad data fails fast
    accelerator = make_accelerator(cfg.mixed_precision)
    world, main = accelerator.num_processes, accelerator.is_main_process
    if cfg.batch_size % world:
        raise ArtalignError(
            f"batch_size={cfg.batch_size} must be a multiple of the {world} "
            "processes (each takes an equal share of every batch)"
        )
    if not main:
        say = lambda _: None  # noqa: E731 (one process speaks)
    generator = Generator.from_folder(cfg.model, device=accelerator.device)
    data = build_dpo_data(prefs, generator, cfg, log=say)
    if len(data.train) < cfg.batch_size:
        raise ArtalignError(
            f"{len(data.train)} training pairs, fewer than batch_size="
            f"{cfg.batch_size}; lower batch_size or label more"
        )
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save_yaml(out / "train_config.yaml")
    accelerator.wait_for_everyone()

    torch.manual_seed(cfg.seed)  # the LoRA down-projections' initialisation
    generator.attach_lora(lora_config(cfg.lora_rank, cfg.lora_alpha))
    params = generator.lora_parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    guard = _make_guard(cfg, generator, data, out) if cfg.guard_every > 0 else None
    start, seconds, best_step, stopped, out_of_time = 0, 0.0, None, False, False
    if resume:
        meta = checkpoint.load(out, generator.unet, optimizer, lr_sched)
        start, seconds, best_step = meta["step"], meta["train_seconds"], meta.get("best_step")
        if guard is not None and meta.get("guard"):
            guard.load_state_dict(meta["guard"])
        say(f"resumed {out} at step {start}")
    if main:
        _trim_log(out / "log.jsonl", start)
    optimizer = accelerator.prepare(optimizer)  # the fp16 loss scaler, when there is one
    order = EpochOrder(len(data.train), cfg.batch_size, cfg.seed)
    rows = local_rows(cfg.batch_size, accelerator) if world > 1 else None

    def save_state(step: int) -> None:
        extra = {
            "train_seconds": seconds,
            "best_step": best_step,
            "guard": guard.state_dict() if guard else None,
        }
        accelerator.wait_for_everyone()
        if main:
            checkpoint.save(out, generator.unet, optimizer, lr_sched, step, extra)
        accelerator.wait_for_everyone()

    history: list[dict[str, Any]] = []
    generator.unet.train()
    for step in range(start, cfg.max_steps):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        parts = []
        for k in range(cfg.grad_accum):
            micro = step * cfg.grad_accum + k
            noise_gen = torch.Generator().manual_seed(_noise_seed(cfg.seed, micro))
            with accelerator.autocast():
                loss, figures = batch_loss(
                    generator, data, data.train.take(order(micro)), cfg.beta, noise_gen, rows
                )
            accelerator.backward(loss / cfg.grad_accum)
            parts.append(mean_figures(figures, accelerator))
        average_gradients(params, accelerator)  # the adapters are not DDP-wrapped
        grad_norm = None
        if cfg.grad_clip > 0:
            grad_norm = float(accelerator.clip_grad_norm_(params, cfg.grad_clip))
        try:
            check_finite(
                "the DPO loss or its gradient",
                *(p["loss"] for p in parts),
                grad_norm or 0.0,
                accelerator=accelerator,
            )
        except NonFinite as e:
            raise stop_message(e, out, f"step {step + 1}", "step") from None
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        lr_sched.step()
        seconds += time.perf_counter() - t0
        record = {
            "step": step + 1,
            **{k: sum(p[k] for p in parts) / len(parts) for k in parts[0]},
            "lr": lr,
            "grad_norm": grad_norm,
            "seconds": round(seconds, 3),
        }
        history.append(record)
        if guard is not None and (step + 1) % cfg.guard_every == 0:
            recent = history[-cfg.guard_every :]
            report = guard.check(step + 1, sum(r["implicit_reward"] for r in recent) / len(recent))
            record["guard"] = report.to_dict()
            if report.is_best:
                best_step = step + 1
                save_adapters(generator, out / "best", accelerator)
            stopped = report.stop
        if main:
            append_log(out / "log.jsonl", record)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            say(
                f"step {step + 1}/{cfg.max_steps}  loss {record['loss']:.4f}  "
                f"implicit_acc {record['implicit_acc']:.3f}  lr {lr:.2e}"
            )
        out_of_time = any_process(0 < cfg.time_limit_min < seconds / 60, accelerator)
        last = step + 1 == cfg.max_steps or stopped or out_of_time
        if (step + 1) % cfg.checkpoint_every == 0 or last:
            save_state(step + 1)
        if stopped:
            say(f"the guard stopped the run at step {step + 1} (best: step {best_step})")
            break
        if out_of_time:
            say(f"time limit: stopped after step {step + 1} ({seconds / 60:.1f} min of training)")
            break
    generator.unet.eval()
    final_step = history[-1]["step"] if history else start
    if not history:
        save_state(final_step)
    save_adapters(generator, out / "lora", accelerator)
    if not main:
        return {}
    metrics = _metrics(cfg, out, generator, data, final_step, seconds, best_step, stopped, guard)
    metrics["stopped_by_time"] = out_of_time
    if cfg.sample_prompts:
        prompts = (data.heldout_prompts or data.prompts)[: cfg.sample_prompts]
        save_samples(generator, prompts, cfg, out / "samples.png")
    write_json(out / "metrics.json", metrics)
    return metrics


def _metrics(
    cfg: DPOConfig,
    out: Path,
    generator: Any,
    data: DPOData,
    step: int,
    seconds: float,
    best_step: int | None,
    stopped: bool,
    guard: Any,
) -> dict[str, Any]:
    """Final figures: the data, the training curve's ends, held-out DPO figures, the guard."""
    lines = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if ln.strip()]
    tail = lines[-min(len(lines), 25) :]

    def mean(key: str) -> float | None:
        return sum(r[key] for r in tail) / len(tail) if tail else None

    metrics: dict[str, Any] = {
        "model": str(cfg.model),
        "pairs": str(cfg.pairs),
        "steps": step,
        "first_loss": lines[0]["loss"] if lines else None,
        "final_loss": mean("loss"),
        "final_implicit_acc": mean("implicit_acc"),
        "final_implicit_reward": mean("implicit_reward"),
        **heldout_figures(generator, data, cfg.beta, cfg.seed, cfg.batch_size * 4),
        "train_seconds": round(seconds, 2),
        "seconds_per_step": round(seconds / max(1, len(lines)), 4),
        "trainable_parameters": sum(p.numel() for p in generator.lora_parameters()),
        "data": data.summary,
        "device": str(generator.device),
        "best_step": best_step,
        "stopped_by_guard": stopped,
    }
    if guard is not None:
        metrics["guard_base"] = guard.base_metrics
        metrics["guard"] = [r.to_dict() for r in guard.history]
    metrics["config"] = cfg.to_dict()
    return metrics
