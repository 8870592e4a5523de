"""`DraftConfig`: everything `artalign align draft` can set, with presets micro / quick / sd15.

Reward backpropagation's fields follow DDPO's names where they mean the same (model, reward,
prompts, sampling, lr, guard, checkpointing), so one YAML file or override set reads the same
for both trainers. Its own:
- grad_steps: K, the last K DDIM steps the gradient flows through (1: DRaFT-1; 0 or >= steps:
  the whole chain, AlignProp); gradient_checkpointing recomputes each step's UNet activations
  in the backward pass, so memory grows with K by latents only;
- lv_draws: DRaFT-LV's extra noisings of the last step (0: off; the paper uses 2);
- kl_coef: weight of the drift penalty, the mean squared difference between the adapted and
  the base model's guided outputs at the differentiable steps (a KL to the base policy up to
  the step variance), which keeps the model near where the reward model was trained.
Defaults follow DRaFT (Clark et al. 2024): K = 1, LoRA, AdamW, gradient-norm clipping at 1.
"""

from __future__ import annotations

import dataclasses

from base_models.config import hfield
from rlhf.align.config_checks import bad, check_trainer
from rlhf.align.guard import GuardConfig


@dataclasses.dataclass
class DraftConfig(GuardConfig):
    """DRaFT-K / AlignProp: maximise a differentiable reward through the last K sampling steps."""

    # model
    model: str = hfield("runs/demo/generator", "Stable Diffusion folder to align.")
    lora_rank: int = hfield(8, "LoRA rank on the UNet's attention projections.")
    lora_alpha: float = hfield(8.0, "LoRA alpha (scale = alpha / rank).")
    init_lora: str | None = hfield(
        None, "Start from these saved adapters (e.g. an earlier round's OUT/lora)."
    )
    # reward
    reward: str = hfield(
        "reward_model", "Differentiable reward by name: reward_model (default), brightness."
    )
    reward_path: str | None = hfield(None, "Reward model folder (reward=reward_model).")
    reward_clip: str | None = hfield(None, "CLIP folder (a reward that needs one).")
    reward_oracle: str | None = hfield(None, "Oracle folder (a reward that needs one).")
    # prompts
    prompts: str = hfield("runs/demo/labels/prompts.txt", "Training prompts, one a line.")
    prompts_per_epoch: int = hfield(16, "Distinct prompts sampled each epoch.")
    images_per_prompt: int = hfield(2, "Images per prompt each epoch.")
    # sampling
    steps: int = hfield(20, "DDIM steps of each sample.")
    guidance: float = hfield(3.0, "Classifier-free guidance scale while sampling and training.")
    eta: float = hfield(0.0, "DDIM η (0: deterministic, as DRaFT samples).")
    # reward backpropagation
    grad_steps: int = hfield(1, "K: the last K steps the gradient flows through (0: all).")
    lv_draws: int = hfield(0, "DRaFT-LV: noisings of the last step per image (0: off).")
    gradient_checkpointing: bool = hfield(
        False, "Recompute each differentiable step's UNet activations in backward (AlignProp)."
    )
    kl_coef: float = hfield(0.0, "Weight of the drift penalty to the base model (adapters off).")
    # training
    epochs: int = hfield(10, "Passes over an epoch's prompts.")
    train_batch_size: int = hfield(8, "Images per optimizer step.")
    lr: float = hfield(3e-4, "AdamW learning rate of the LoRA weights.")
    weight_decay: float = hfield(1e-4, "AdamW weight decay.")
    max_grad_norm: float = hfield(1.0, "Gradient-norm clip per optimizer step.")
    mixed_precision: str = hfield("no", "no | bf16 | fp16 (Accelerate; fp16 needs a GPU).")
    seed: int = hfield(0, "Seed of prompt choice, sampling seeds and LoRA initialisation.")
    checkpoint_every: int = hfield(1, "Save OUT/checkpoint every this many epochs.")
    time_limit_min: float = hfield(
        0.0, "Stop after the epoch that passes this many minutes of training (0: no limit)."
    )

    PRESETS = {
        "micro": {
            "model": "",
            "prompts": "",
            "epochs": 2,
            "prompts_per_epoch": 2,
            "images_per_prompt": 2,
            "steps": 3,
            "train_batch_size": 2,
            "lora_rank": 2,
            "lora_alpha": 2.0,
            "guard_n_prompts": 2,
            "guard_seeds_per_prompt": 1,
            "guard_steps": 3,
            "guard_n_reference": 8,
        },
        # tuned for the tiny CPU generator with 4-minute probes on the learned reward (README,
        # "Reward backpropagation"): K = 1 barely moved it, K = 5 did; lr 1e-2 collapsed
        "quick": {"lr": 3e-3, "grad_steps": 5},
        "sd15": {
            "model": "",
            "prompts": "",
            "lora_rank": 4,
            "lora_alpha": 4.0,
            "steps": 50,
            "guidance": 5.0,
            "prompts_per_epoch": 32,
            "images_per_prompt": 4,
            "train_batch_size": 4,
            "epochs": 20,
            "lv_draws": 2,
            "mixed_precision": "bf16",
            "guard_steps": 50,
            "guard_guidance": 5.0,
        },
    }

    def validate(self) -> DraftConfig:
        counts = (
            "epochs",
            "prompts_per_epoch",
            "images_per_prompt",
            "steps",
            "train_batch_size",
            "lora_rank",
            "checkpoint_every",
        )
        check_trainer(self, counts, ("lr", "max_grad_norm"))
        if self.grad_steps < 0:
            raise bad("grad_steps", f"must be >= 0 (0: every step), got {self.grad_steps}")
        if self.lv_draws < 0:
            raise bad("lv_draws", f"must be >= 0, got {self.lv_draws}")
        if self.lv_draws and self.grad_steps != 1:
            raise bad("lv_draws", f"needs grad_steps=1 (DRaFT-LV), got {self.grad_steps}")
        if not 0 <= self.eta <= 1:
            raise bad("eta", f"must be in [0, 1], got {self.eta}")
        return self

    @property
    def images_per_epoch(self) -> int:
        return self.prompts_per_epoch * self.images_per_prompt
