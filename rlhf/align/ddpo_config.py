"""`DDPOConfig`: everything `artalign align ddpo` can set, with presets micro / quick / sd15.

Fields, by group (the guard's fields, prefixed `guard_`, come from `GuardConfig`):
- model: model, lora_rank, lora_alpha, init_lora;
- reward: reward, reward_path, reward_clip, reward_oracle;
- prompts: prompts, prompts_per_epoch, images_per_prompt;
- sampling: steps, guidance, eta, sample_batch_size;
- training: epochs, inner_epochs, train_batch_size, timestep_fraction, lr, weight_decay,
  max_grad_norm, clip_range, adv_clip_max, per_prompt_stats, stat_buffer, stat_min_count,
  kl_coef, mixed_precision, seed, checkpoint_every, time_limit_min.
Defaults follow kvablack/ddpo-pytorch (PPO clip range 1e-4 on per-dimension log-probs, lr 3e-4,
advantage clip 5, per-prompt stat tracking, LoRA, DDIM with η = 1), which the `sd15` preset
keeps; the `quick` preset takes 10x the step size and 100x the trust region, tuned for the tiny
32-pixel default, whose CPU budget is a few hundred optimizer steps.
"""

from __future__ import annotations

import dataclasses

from base_models.config import hfield
from rlhf.align.config_checks import bad, check_trainer
from rlhf.align.guard import GuardConfig


@dataclasses.dataclass
class DDPOConfig(GuardConfig):
    """DDPO: sample with log-probs, score with a reward, PPO-clip per denoising step, LoRA."""

    # model
    model: str = hfield("runs/demo/generator", "Stable Diffusion folder to align.")
    lora_rank: int = hfield(8, "LoRA rank on the UNet's attention projections.")
    lora_alpha: float = hfield(8.0, "LoRA alpha (scale = alpha / rank).")
    init_lora: str | None = hfield(
        None,
        "Start from these saved adapters (e.g. an earlier "
        "round's OUT/lora) instead of a fresh LoRA.",
    )
    # reward
    reward: str = hfield(
        "reward_model",
        "Reward by name: reward_model, clip_score, "
        "oracle_fidelity (research), compressibility, incompressibility, "
        "brightness.",
    )
    reward_path: str | None = hfield(None, "Reward model folder (reward=reward_model).")
    reward_clip: str | None = hfield(None, "CLIP folder (reward=clip_score).")
    reward_oracle: str | None = hfield(None, "Oracle folder (reward=oracle_fidelity).")
    # prompts
    prompts: str = hfield("runs/demo/labels/prompts.txt", "Training prompts, one a line.")
    prompts_per_epoch: int = hfield(16, "Distinct prompts sampled each epoch.")
    images_per_prompt: int = hfield(4, "Images per prompt each epoch (the per-prompt group).")
    # sampling
    steps: int = hfield(20, "DDIM steps of each trajectory.")
    guidance: float = hfield(3.0, "Classifier-free guidance scale while sampling and training.")
    eta: float = hfield(1.0, "DDIM η (> 0: each step is a Gaussian policy with a log-prob).")
    sample_batch_size: int = hfield(64, "Images per sampling batch.")
    # training
    epochs: int = hfield(40, "Sample-then-train rounds.")
    inner_epochs: int = hfield(1, "Passes of PPO over each epoch's samples.")
    train_batch_size: int = hfield(16, "Trajectories per optimizer step.")
    timestep_fraction: float = hfield(
        0.5, "Share of each trajectory's steps trained on (a random subset per trajectory)."
    )
    lr: float = hfield(3e-4, "AdamW learning rate of the LoRA weights.")
    weight_decay: float = hfield(1e-4, "AdamW weight decay.")
    max_grad_norm: float = hfield(1.0, "Gradient-norm clip per optimizer step.")
    clip_range: float = hfield(1e-4, "PPO clip range ε of the per-step importance ratio.")
    adv_clip_max: float = hfield(5.0, "Advantages are clipped to [-this, this].")
    per_prompt_stats: bool = hfield(True, "Normalise rewards per prompt (else per batch).")
    stat_buffer: int = hfield(32, "Rewards remembered per prompt.")
    stat_min_count: int = hfield(4, "Below this many rewards a prompt uses batch statistics.")
    kl_coef: float = hfield(0.0, "Weight of the per-step KL to the reference (adapters off).")
    mixed_precision: str = hfield("no", "no | bf16 | fp16 (Accelerate; fp16 needs a GPU).")
    seed: int = hfield(0, "Seed of prompt choice, sampling seeds and LoRA initialisation.")
    checkpoint_every: int = hfield(1, "Save OUT/checkpoint every this many epochs.")
    time_limit_min: float = hfield(
        0.0,
        "Stop after the epoch that passes this many minutes of "
        "this session's training (0: no limit).",
    )

    PRESETS = {
        "micro": {
            "model": "",
            "prompts": "",
            "epochs": 2,
            "prompts_per_epoch": 2,
            "images_per_prompt": 2,
            "steps": 3,
            "sample_batch_size": 4,
            "train_batch_size": 2,
            "lora_rank": 2,
            "lora_alpha": 2.0,
            "guard_n_prompts": 2,
            "guard_seeds_per_prompt": 1,
            "guard_steps": 3,
            "guard_n_reference": 8,
        },
        # tuned for the tiny generator on a CPU budget (README, "Do the trainers move a
        # policy?"): ddpo-pytorch's lr 3e-4 and clip range 1e-4 moved compressibility by 0.05
        # base standard deviations in 5 minutes, these by 0.83
        "quick": {"lr": 3e-3, "clip_range": 1e-2},
        "sd15": {
            "model": "",
            "prompts": "",
            "lora_rank": 4,
            "lora_alpha": 4.0,
            "steps": 50,
            "guidance": 5.0,
            "prompts_per_epoch": 32,
            "images_per_prompt": 8,
            "sample_batch_size": 8,
            "train_batch_size": 4,
            "epochs": 100,
            "mixed_precision": "bf16",
            "stat_buffer": 32,
            "stat_min_count": 16,
            "guard_steps": 50,
            "guard_guidance": 5.0,
        },
    }

    def validate(self) -> DDPOConfig:
        counts = (
            "epochs",
            "inner_epochs",
            "prompts_per_epoch",
            "images_per_prompt",
            "steps",
            "sample_batch_size",
            "train_batch_size",
            "lora_rank",
            "checkpoint_every",
            "stat_buffer",
            "stat_min_count",
        )
        check_trainer(self, counts, ("lr", "clip_range", "adv_clip_max", "max_grad_norm"))
        if not 0 < self.eta <= 1:
            raise bad("eta", f"must be in (0, 1] for DDPO (a step needs noise), got {self.eta}")
        if not 0 < self.timestep_fraction <= 1:
            raise bad("timestep_fraction", f"must be in (0, 1], got {self.timestep_fraction}")
        return self

    @property
    def images_per_epoch(self) -> int:
        return self.prompts_per_epoch * self.images_per_prompt

    @property
    def train_timesteps(self) -> int:
        return max(1, int(round(self.steps * self.timestep_fraction)))
