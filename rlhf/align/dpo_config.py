"""`DPOConfig`: everything `artalign align dpo` can set, with presets micro / quick / sd15.

Fields, by group:
- model: model (the SD folder), lora_rank, lora_alpha;
- data: pairs (store or export file), data_batch, ties, tie_weight, both_bad, include_gold,
  exclude_flagged, flag_kappa, rater_weights, heldout_frac, max_pairs, encode_batch_size, seed;
- training: beta, lr, lr_schedule, warmup_steps, max_steps, time_limit_min, batch_size,
  grad_accum, grad_clip, weight_decay, mixed_precision, log_every, checkpoint_every, eval_pairs;
- samples: sample_prompts, sample_seeds, sample_steps, sample_guidance;
- guard: the `guard_*` fields of `rlhf.align.guard.GuardConfig` (inherited). With guard_every > 0
  and no guard_prompts file, the guard samples the held-out split's prompts.

β is on the scale of a per-sample *mean* squared error, as diffusers' train_diffusion_dpo.py
computes it (its default β 2500; the paper used 2500-5000 for SD 1.5). The presets:
- quick (the tiny 32px CPU model): β 2500, lr 1e-3, 300 steps of 16 pairs. Measured: on a
  clean preference (light backgrounds, 576 pairs) the held-out implicit accuracy reaches 0.89
  after 200 steps; lr 1e-4 barely moves the adapters in that budget, and β 500 / 2500 / 5000
  gave the same (null) win-rate on the noisy benchmark store (benchmarks/dpo_winrate.py).
- sd15: diffusers' LoRA recipe (rank 8, lr 1e-5, 16 x 2 pairs a step, constant lr, β 2500).
"""

from __future__ import annotations

import dataclasses

from base_models.config import hfield
from base_models.errors import ArtalignError
from base_models.train_utils import MIXED_PRECISION, check_config
from rlhf.align.guard import GuardConfig
from rlhf.reward.data import BOTH_BAD

TIES = ("drop", "weight")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class DPOConfig(GuardConfig):
    """Diffusion-DPO with a LoRA on the UNet: model, data handling, optimisation, samples."""

    # model
    model: str = hfield("runs/demo/generator", "The generator: a local Stable Diffusion folder.")
    lora_rank: int = hfield(8, "LoRA rank of the adapters on the UNet's attention projections.")
    lora_alpha: float | None = hfield(None, "LoRA alpha (scale = alpha / rank); null: the rank.")
    # data
    pairs: str | None = hfield(
        None, "Preference data: a label store (.db), a Pick-a-Pic .parquet or .jsonl rankings."
    )
    data_batch: str | None = hfield(None, "Label store only: use this batch (name or id).")
    ties: str = hfield(
        "drop",
        "drop: leave tied pairs out; weight: keep each tie as two pairs (both orders, p = 0.5), "
        "each at weight tie_weight / 2, which pulls the two images' errors toward the reference's.",
    )
    tie_weight: float = hfield(0.5, "ties=weight: a tie's total weight (a decisive pair weighs 1).")
    both_bad: str = hfield("drop", "What a 'both bad' answer becomes: drop or tie.")
    include_gold: bool = hfield(False, "Train on gold tasks' judgments too.")
    exclude_flagged: bool = hfield(True, "Leave out raters who agree with nobody (kappa flags).")
    flag_kappa: float = hfield(
        0.2, "A rater whose kappa with every partner is below this is flagged (exclude_flagged)."
    )
    rater_weights: bool = hfield(False, "Weight raters' pairs by their mean kappa with the others.")
    heldout_frac: float = hfield(
        0.1, "Share of prompts held out (split by prompt): held-out DPO accuracy, samples, guard."
    )
    max_pairs: int | None = hfield(None, "Train on at most this many pairs (a random subset).")
    encode_batch_size: int = hfield(64, "Images per VAE batch when encoding the pairs' latents.")
    seed: int = hfield(0, "Seed of the split, the LoRA initialisation, pair order, noise and t.")
    # training
    beta: float = hfield(2500.0, "DPO beta on per-sample mean squared errors (SD 1.5: 2500-5000).")
    lr: float = hfield(1e-4, "AdamW learning rate of the LoRA weights.")
    lr_schedule: str = hfield("constant", "constant (after warmup) or cosine (decay to 0).")
    warmup_steps: int = hfield(10, "Linear learning-rate warmup, in optimizer steps.")
    max_steps: int = hfield(300, "Optimizer steps (each of batch_size x grad_accum pairs).")
    time_limit_min: float = hfield(
        0.0,
        "Stop after the step that passes this many minutes "
        "of training steps, resumed sessions included (0: no "
        "limit).",
    )
    batch_size: int = hfield(16, "Pairs per forward pass (each pair: winner and loser).")
    grad_accum: int = hfield(1, "Forward passes whose gradients add up to one optimizer step.")
    grad_clip: float = hfield(1.0, "Clip the gradient norm to this (0: off).")
    weight_decay: float = hfield(0.0, "AdamW weight decay on the LoRA weights.")
    mixed_precision: str = hfield("no", "no | bf16 | fp16 (fp16 needs a GPU).")
    log_every: int = hfield(10, "Print a progress line every this many steps (log.jsonl: all).")
    checkpoint_every: int = hfield(
        100, "Save OUT/checkpoint every this many steps (and at the end)."
    )
    eval_pairs: int = hfield(
        512, "Held-out pairs scored for the held-out implicit accuracy (0: skip), fixed noise."
    )
    # samples
    sample_prompts: int = hfield(8, "Held-out prompts in samples.png (0: no samples.png).")
    sample_seeds: int = hfield(2, "Seeds per prompt in samples.png (base row, aligned row).")
    sample_steps: int = hfield(20, "DDIM steps of samples.png (eta 0).")
    sample_guidance: float = hfield(3.0, "Classifier-free guidance of samples.png.")

    PRESETS = {
        "micro": {
            "lora_rank": 2,
            "max_steps": 2,
            "batch_size": 2,
            "warmup_steps": 0,
            "log_every": 1,
            "checkpoint_every": 1,
            "encode_batch_size": 8,
            "eval_pairs": 4,
            "sample_prompts": 2,
            "sample_seeds": 1,
            "sample_steps": 2,
            "heldout_frac": 0.2,
        },
        "quick": {"max_steps": 300, "batch_size": 16, "lr": 1e-3, "beta": 2500.0},
        "sd15": {
            "lora_rank": 8,
            "beta": 2500.0,
            "lr": 1e-5,
            "max_steps": 10000,
            "batch_size": 16,
            "grad_accum": 2,
            "warmup_steps": 0,
            "mixed_precision": "bf16",
            "checkpoint_every": 2000,
            "log_every": 50,
            "sample_steps": 30,
            "sample_guidance": 7.5,
            "encode_batch_size": 16,
        },
    }

    def validate(self) -> None:
        """Raise an ArtalignError naming the first bad value and its fix."""
        choices = [
            ("ties", TIES),
            ("both_bad", BOTH_BAD),
            ("lr_schedule", LR_SCHEDULES),
            ("mixed_precision", MIXED_PRECISION),
        ]
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ArtalignError(
                    f"{name}={getattr(self, name)!r} is unknown; choose one of {', '.join(allowed)}"
                )
        check_config(
            "DPO config",
            [
                (self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}"),
                (self.lora_alpha is None or self.lora_alpha > 0, "lora_alpha must be > 0 or null"),
                (self.tie_weight > 0, f"tie_weight must be > 0, got {self.tie_weight}"),
                (
                    0 <= self.heldout_frac < 1,
                    f"heldout_frac must be in [0, 1): {self.heldout_frac}",
                ),
                (self.max_pairs is None or self.max_pairs >= 1, "max_pairs must be >= 1 or null"),
                (self.beta > 0, f"beta must be > 0, got {self.beta}"),
                (self.lr > 0, f"lr must be > 0, got {self.lr}"),
                (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
                (
                    self.time_limit_min >= 0,
                    f"time_limit_min must be >= 0, got {self.time_limit_min}",
                ),
                (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
                (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
                (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
                (self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}"),
                (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
                (self.encode_batch_size >= 1, "encode_batch_size must be >= 1"),
                (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
                (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
                (self.eval_pairs >= 0, f"eval_pairs must be >= 0, got {self.eval_pairs}"),
                (
                    self.sample_prompts >= 0 and self.sample_seeds >= 1,
                    "sample_prompts must be >= 0 and sample_seeds >= 1",
                ),
                (self.sample_steps >= 1, f"sample_steps must be >= 1, got {self.sample_steps}"),
                (
                    self.sample_guidance >= 1 or self.sample_guidance == 0,
                    f"sample_guidance must be >= 1 (or 0: off), got {self.sample_guidance}",
                ),
                (self.guard_every >= 0, f"guard_every must be >= 0, got {self.guard_every}"),
            ],
        )
