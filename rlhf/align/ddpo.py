"""DDPO (Black et al. 2023): reinforcement learning on the denoising chain, with LoRA.

Each epoch samples images with DDIM at η > 0 — every step a Gaussian policy
π_θ(x_{t-1} | x_t, c) whose log-prob the sampler records — scores them with a reward function,
turns rewards into advantages (per-prompt normalisation with a batch fallback, clipped), then
trains the LoRA with PPO-clip on the importance ratio of each step: for a random subset of each
trajectory's steps, log π_θ of the recorded x_{t-1} is recomputed under the current weights,
gradients accumulate over those steps, and the optimizer steps once per batch of trajectories.
An optional KL term keeps each step's mean near the reference model's (adapters off).

Multi-GPU (`accelerate launch`): each process samples its share of the epoch's prompt groups;
rewards are gathered so every process runs the same stat tracker; LoRA gradients are averaged
across processes explicitly before each optimizer step (the adapters are not inside a DDP
wrapper); every process reaches every save, and only the main process writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.generator import Generator
from base_models.generator.ddim import gaussian_log_prob
from base_models.generator.outputs import Trajectory
from base_models.io_utils import write_json
from rlhf.align.ddpo_config import DDPOConfig
from rlhf.align.epochs import RunState, begin, lora_policy, open_run, reward_kwargs, run_epochs
from rlhf.align.finite import check_finite
from rlhf.align.guard import Guard, read_prompts
from rlhf.align.losses import kl_to_reference, ppo_clip_loss
from rlhf.align.processes import average_gradients, gather_objects
from rlhf.align.rewards import make_reward, reward_spec
from rlhf.align.run_files import save_samples_grid
from rlhf.align.stat_tracker import PerPromptStatTracker

# what metrics.json keeps of each epoch's log line: the reward and PPO's trust-region figures
CURVE_KEYS = (
    "epoch",
    "reward_mean",
    "reward_std",
    "clipfrac",
    "clipfrac_max",
    "approx_kl",
    "kl_ref",
    "loss",
)


@dataclass
class EpochSamples:
    """One epoch's trajectories and their rewards (this process's share)."""

    prompts: list[str]
    trajectory: Trajectory
    rewards: np.ndarray
    reward_info: dict[str, Any]
    seconds: float


def epoch_prompts(
    prompts: list[str], cfg: DDPOConfig, epoch: int, rank: int = 0, world: int = 1
) -> tuple[list[str], list[int]]:
    """This process's prompts (each repeated images_per_prompt times) and seeds of `epoch`.

    A pure function of (seed, epoch): a resumed run samples what an uninterrupted one would.
    """
    rng = np.random.default_rng([cfg.seed, epoch])
    n = cfg.prompts_per_epoch
    idx = rng.choice(len(prompts), size=n, replace=len(prompts) < n)
    groups = list(range(n))[rank::world]
    chosen = [prompts[int(idx[g])] for g in groups for _ in range(cfg.images_per_prompt)]
    seeds = [
        (cfg.seed * 1_000 + epoch) * 100_000 + g * cfg.images_per_prompt + j
        for g in groups
        for j in range(cfg.images_per_prompt)
    ]
    return chosen, seeds


def sample_epoch(
    generator: Generator,
    reward_fn: Any,
    prompts: list[str],
    seeds: list[int],
    cfg: DDPOConfig,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> EpochSamples:
    """Sample trajectories with log-probs and score the final images.

    `autocast` must be the context PPO re-scores the steps under (`accelerator.autocast`): the
    recorded log-probs are the old policy's, so they must come from the same arithmetic, or the
    ratio is not 1 before any update (bf16: |log-ratio| 0.44, every sample clipped).
    """
    t0 = time.perf_counter()
    generator.unet.eval()
    with autocast():
        out = generator.sample(
            prompts,
            seeds,
            steps=cfg.steps,
            guidance=cfg.guidance,
            eta=cfg.eta,
            batch_size=cfg.sample_batch_size,
            return_trajectory=True,
        )
    rewards, info = reward_fn(out.pixels, prompts, [{"seed": s} for s in seeds])
    rewards = np.asarray(torch.as_tensor(rewards).float().cpu(), dtype=np.float64)
    check_finite("the reward (of the reward function)", *rewards)
    info = {k: v for k, v in info.items() if isinstance(v, (int, float, bool, str))}
    return EpochSamples(prompts, out.trajectory, rewards, info, time.perf_counter() - t0)


def advantages_of(
    samples: EpochSamples, tracker: PerPromptStatTracker | None, accelerator: Any
) -> np.ndarray:
    """Advantages of this process's samples, from the rewards of every process."""
    rewards = samples.rewards
    prompts = samples.prompts
    if accelerator.num_processes > 1:  # NCCL gathers only tensors on the process's device
        local = torch.as_tensor(rewards).to(accelerator.device)
        rewards = accelerator.gather(local).cpu().numpy().astype(np.float64)
        prompts = [p for chunk in gather_objects(accelerator, samples.prompts) for p in chunk]
    if tracker is not None:
        adv = tracker.update(prompts, rewards)
    else:
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    n = len(samples.rewards)
    start = accelerator.process_index * n
    return adv[start : start + n]


def rescore_steps(
    generator: Generator, traj: Trajectory, rows: torch.Tensor, k: torch.Tensor, accelerator: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-prob, mean, σ) of step k[i] of trajectory rows[i] under the current weights.

    Runs under `accelerator.autocast()`, as the sampling did (`sample_epoch`): with unchanged
    weights the log-prob is the recorded one.
    """
    x_t = traj.latents[rows, k]
    x_prev = traj.latents[rows, k + 1]
    with accelerator.autocast():
        mean, std = generator.step_distribution(
            x_t,
            traj.timesteps[k],
            traj.prompt_embeds[rows],
            steps=traj.steps,
            guidance=traj.guidance,
            eta=traj.eta,
        )
    return gaussian_log_prob(x_prev.to(mean.device), mean, std), mean, std


def train_epoch(
    generator: Generator,
    optimizer: torch.optim.Optimizer,
    samples: EpochSamples,
    advantages: np.ndarray,
    cfg: DDPOConfig,
    epoch: int,
    accelerator: Any,
) -> dict[str, float]:
    """PPO-clip over the epoch's trajectories; returns the loss statistics.

    Means over every (minibatch, step), plus `clipfrac_max` (the largest minibatch clipfrac:
    with a trust region that fits the step size it stays well below 1) and `minibatches`.
    """
    traj = samples.trajectory
    n, steps = traj.log_probs.shape
    adv = torch.as_tensor(advantages, dtype=torch.float32).clamp(
        -cfg.adv_clip_max, cfg.adv_clip_max
    )
    g = torch.Generator().manual_seed(cfg.seed * 7_919 + epoch)
    params = generator.lora_parameters()
    n_t = cfg.train_timesteps
    stats: dict[str, list[float]] = {"loss": [], "approx_kl": [], "clipfrac": [], "kl_ref": []}
    minibatch_clipfrac: list[float] = []
    generator.unet.train()
    for _ in range(cfg.inner_epochs):
        order = torch.randperm(n, generator=g)
        # a random subset of steps per trajectory (ddpo-pytorch's timestep_fraction)
        step_perm = torch.stack([torch.randperm(steps, generator=g) for _ in range(n)])
        for start in range(0, n, cfg.train_batch_size):
            rows = order[start : start + cfg.train_batch_size]
            optimizer.zero_grad(set_to_none=True)
            clipped = []
            for j in range(n_t):
                k = step_perm[rows, j]  # (b,) step index of each trajectory
                log_prob, mean, std = rescore_steps(generator, traj, rows, k, accelerator)
                old = traj.log_probs[rows, k].to(log_prob.device)
                loss, info = ppo_clip_loss(
                    log_prob, old, adv[rows].to(log_prob.device), cfg.clip_range
                )
                kl = torch.zeros(())
                if cfg.kl_coef > 0:
                    with torch.no_grad(), generator.lora_disabled():
                        _, ref_mean, _ = rescore_steps(generator, traj, rows, k, accelerator)
                    kl = kl_to_reference(mean, ref_mean, std).mean()
                    loss = loss + cfg.kl_coef * kl
                accelerator.backward(loss / n_t)
                stats["loss"].append(float(loss.detach()))
                stats["approx_kl"].append(float(info["approx_kl"]))
                stats["clipfrac"].append(float(info["clipfrac"]))
                stats["kl_ref"].append(float(kl.detach()))
                clipped.append(float(info["clipfrac"]))
            minibatch_clipfrac.append(float(np.mean(clipped)))
            average_gradients(params, accelerator)  # the adapters are not DDP-wrapped
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            check_finite(
                "the PPO loss or its gradient",
                *stats["loss"][-n_t:],
                grad_norm,
                accelerator=accelerator,
            )
            optimizer.step()
    generator.unet.eval()
    out = {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}
    out["clipfrac_max"] = max(minibatch_clipfrac, default=0.0)
    out["minibatches"] = len(minibatch_clipfrac)
    return out


def train_ddpo(cfg: DDPOConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Align `cfg.model` to `cfg.reward` with DDPO; write the run folder (docs/alignment.md)."""
    cfg.validate()
    out = Path(out)
    accelerator = open_run(cfg, out, resume)
    device = str(accelerator.device)
    prompts = read_prompts(cfg.prompts)
    reward_fn = make_reward(cfg.reward, **reward_kwargs(cfg, device))
    research = reward_spec(cfg.reward).research
    generator, params, optimizer, scheduler = lora_policy(cfg, device)
    tracker = (
        PerPromptStatTracker(cfg.stat_buffer, cfg.stat_min_count) if cfg.per_prompt_stats else None
    )
    guard = Guard(cfg, generator, reward_fn) if cfg.guard_enabled else None
    run = RunState(
        out,
        cfg,
        generator,
        optimizer,
        scheduler,
        accelerator,
        guard,
        extra_state=lambda: {"tracker": tracker.state_dict() if tracker else None},
    )
    start_epoch, history, state = begin(run, resume)
    if tracker is not None and state.get("tracker"):
        tracker.load_state_dict(state["tracker"])

    def train(epoch: int) -> dict[str, Any]:
        ep_prompts, seeds = epoch_prompts(
            prompts, cfg, epoch, accelerator.process_index, accelerator.num_processes
        )
        samples = sample_epoch(generator, reward_fn, ep_prompts, seeds, cfg, accelerator.autocast)
        adv = advantages_of(samples, tracker, accelerator)
        stats = train_epoch(generator, optimizer, samples, adv, cfg, epoch, accelerator)
        row = {
            "reward_mean": float(samples.rewards.mean()),
            "reward_std": float(samples.rewards.std()),
            **stats,
            "sample_s": samples.seconds,
            "reward_info": samples.reward_info,
        }
        if research:
            row["research_reward"] = cfg.reward
        return row

    ended = run_epochs(run, start_epoch, history, train)
    metrics = {
        "reward": cfg.reward,
        "research_reward": research,
        "epochs_run": len(history),
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
