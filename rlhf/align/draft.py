"""Reward backpropagation with LoRA: DRaFT-K (Clark et al. 2024) and AlignProp (Prabhudesai et
al. 2023).

The reward model is a differentiable CLIP head, so instead of estimating a policy gradient from
rewards (DDPO) the trainer differentiates the reward of each image with respect to the LoRA
weights: sample with the current weights, gradients on through the last K DDIM steps
(`base_models.generator.backprop`), decode with the VAE, score, and descend on

    loss = -mean reward + kl_coef · drift

where drift is the mean squared difference between the adapted and the base model's guided
outputs at the differentiable steps. K = 1 is DRaFT-1, K = all (with gradient checkpointing) is
AlignProp; lv_draws > 0 is DRaFT-LV. Every image is drawn by the weights it trains (on-policy,
one optimizer step per `train_batch_size` images, no replay). An epoch covers the same prompts
and seeds as a DDPO epoch (`epoch_prompts`), so the two trainers' curves share an x axis:
images seen.

Run folder, guard, checkpoints and resume are DDPO's (docs/alignment.md). Multi-GPU
(`accelerate launch`): each process takes its share of the epoch's prompt groups, and the LoRA
gradients are averaged across processes before each optimizer step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.generator import Generator
from base_models.generator.backprop import sample_with_grad
from base_models.io_utils import write_json
from rlhf.align.ddpo import epoch_prompts
from rlhf.align.draft_config import DraftConfig
from rlhf.align.epochs import RunState, begin, lora_policy, open_run, reward_kwargs, run_epochs
from rlhf.align.finite import check_finite
from rlhf.align.guard import Guard, read_prompts
from rlhf.align.processes import average_gradients, mean_figures
from rlhf.align.rewards import make_differentiable_reward, reward_spec
from rlhf.align.run_files import save_samples_grid

# what metrics.json keeps of each epoch's log line
CURVE_KEYS = ("epoch", "images_seen", "reward_mean", "reward_std", "drift", "loss", "grad_norm")


def resolve_reward(cfg: DraftConfig, device: str) -> Any:
    """The differentiable reward_fn of `cfg.reward`; a reward without gradients fails here."""
    return make_differentiable_reward(cfg.reward, **reward_kwargs(cfg, device))


def train_step(
    generator: Generator,
    reward_fn: Any,
    prompts: list[str],
    seeds: list[int],
    cfg: DraftConfig,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    accelerator: Any,
    lv_seed: int = 0,
) -> dict[str, Any]:
    """One optimizer step on one batch: sample with gradients, score, backpropagate.

    Returns each image's reward (averaged over LV draws) before the step, and the step's
    figures (loss, drift, gradient norm before clipping).
    """
    generator.unet.eval()  # LoRA dropout off: the gradient is that of the sampled images
    with accelerator.autocast():
        sample = sample_with_grad(
            generator,
            prompts,
            seeds,
            steps=cfg.steps,
            guidance=cfg.guidance,
            eta=cfg.eta,
            grad_steps=cfg.grad_steps,
            checkpointing=cfg.gradient_checkpointing,
            lv_draws=cfg.lv_draws,
            lv_seed=lv_seed,
            drift=cfg.kl_coef > 0,
        )
        rewards, _ = reward_fn(sample.pixels, sample.prompts)
    rewards = rewards.float()
    check_finite("the reward (of the reward function)", *rewards.detach().flatten().tolist())
    if not rewards.requires_grad:
        raise ArtalignError(f"reward {cfg.reward!r} returned no gradient; it is not differentiable")
    loss = -rewards.mean() + cfg.kl_coef * sample.drift.float()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(params, accelerator)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    check_finite(
        "the DRaFT loss or its gradient", loss.detach(), grad_norm, accelerator=accelerator
    )
    optimizer.step()
    per_image = rewards.detach().float().cpu().view(max(1, cfg.lv_draws), len(prompts)).mean(0)
    return {
        "rewards": per_image.numpy().astype(np.float64),
        "loss": float(loss.detach()),
        "drift": float(sample.drift.detach()),
        "grad_norm": float(grad_norm),
    }


def train_epoch(
    generator: Generator,
    reward_fn: Any,
    prompts: list[str],
    seeds: list[int],
    cfg: DraftConfig,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    accelerator: Any,
) -> dict[str, Any]:
    """The epoch's images in batches of train_batch_size, one optimizer step each."""
    rewards, figures = [], {"loss": [], "drift": [], "grad_norm": []}
    b = cfg.train_batch_size
    for start in range(0, len(prompts), b):
        lv_seed = (cfg.seed * 1_000 + epoch) * 100_000 + start
        out = train_step(
            generator,
            reward_fn,
            prompts[start : start + b],
            seeds[start : start + b],
            cfg,
            optimizer,
            params,
            accelerator,
            lv_seed,
        )
        rewards.append(out["rewards"])
        for key in figures:
            figures[key].append(out[key])
    r = np.concatenate(rewards)
    local = {"reward_mean": float(r.mean()), "reward_std": float(r.std())}
    local.update({k: float(np.mean(v)) for k, v in figures.items()})
    local["steps"] = float(len(rewards))
    return mean_figures(local, accelerator)


def train_draft(cfg: DraftConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Align `cfg.model` to a differentiable reward by backpropagation; write the run folder."""
    cfg.validate()
    out = Path(out)
    accelerator = open_run(cfg, out, resume)
    device = str(accelerator.device)
    reward_fn = resolve_reward(cfg, device)  # fails fast on a reward without gradients
    research = bool(reward_spec(cfg.reward).meta.get("research"))
    prompts = read_prompts(cfg.prompts)
    generator, params, optimizer, scheduler = lora_policy(cfg, device)
    guard = Guard(cfg, generator, reward_fn) if cfg.guard_enabled else None
    run = RunState(out, cfg, generator, optimizer, scheduler, accelerator, guard)
    start_epoch, history, _ = begin(run, resume)

    def train(epoch: int) -> dict[str, Any]:
        ep_prompts, seeds = epoch_prompts(
            prompts, cfg, epoch, accelerator.process_index, accelerator.num_processes
        )
        stats = train_epoch(
            generator, reward_fn, ep_prompts, seeds, cfg, epoch, optimizer, params, accelerator
        )
        row = {"images_seen": (epoch + 1) * cfg.images_per_epoch, **stats}
        if research:
            row["research_reward"] = cfg.reward
        return row

    ended = run_epochs(run, start_epoch, history, train)
    metrics = {
        "trainer": "draft",
        "reward": cfg.reward,
        "research_reward": research,
        "grad_steps": cfg.grad_steps,
        "lv_draws": cfg.lv_draws,
        "epochs_run": len(history),
        "images_seen": history[-1]["images_seen"] if history else 0,
        "stopped_by_guard": ended["stopped_by_guard"],
        "stopped_by_time": ended["stopped_by_time"],
        "first_reward": history[0]["reward_mean"] if history else None,
        "last_reward": history[-1]["reward_mean"] if history else None,
        "train_seconds_this_session": ended["train_seconds_this_session"],
        "guard": [h["guard"] for h in history if "guard" in h],
        "per_epoch": [{k: h[k] for k in CURVE_KEYS if k in h} for h in history],
    }
    if accelerator.is_main_process:
        save_samples_grid(generator, prompts[:8], out / "samples.png", cfg.steps, cfg.guidance)
        write_json(out / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return metrics
