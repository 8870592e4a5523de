"""`UNetConfig`: every knob of `artalign base train-unet`, with presets micro / quick / gpu."""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.train_utils import MIXED_PRECISION, check_config
from base_models.unet.losses import PREDICTION_TYPES

TEXT_ENCODER_INITS = ("clip", "scratch")
BETA_SCHEDULES = ("scaled_linear", "linear", "squaredcos_cap_v2")


@dataclasses.dataclass
class UNetConfig(BaseConfig):
    """Training a latent UNet2DConditionModel on a frozen VAE and a frozen CLIP text tower.

    Model: block_out_channels, layers_per_block, attention_levels, mid_attention,
    attention_head_dim, norm_num_groups (cross_attention_dim is the text tower's width).
    Noise: num_train_timesteps, beta_start / beta_end / beta_schedule, prediction_type.
    Training: max_steps, batch_size, grad_accum, lr, warmup_steps, weight_decay, grad_clip,
    snr_gamma, caption_dropout, ema_decay / ema_power, mixed_precision, gradient_checkpointing,
    seed, max_items, image_size. Bookkeeping: checkpoint_every, log_every, sample_* (grids).
    """

    # --- model
    block_out_channels: list[int] = hfield(
        [16, 64, 128],
        "Channels per UNet level; each level but the last halves the latent side (16x16 "
        "latents: a narrow 16x16 level, then 8x8 and 4x4).",
    )
    layers_per_block: int = hfield(1, "ResNet (+ transformer) layers per down block.")
    attention_levels: list[int] = hfield(
        [1, 2],
        "Levels (0 = full latent resolution) whose blocks have self+cross-attention (quick: "
        "8x8 and 4x4; attention over 256 tokens at 16x16 would cost more than it gives).",
    )
    mid_attention: bool = hfield(True, "Self+cross-attention in the mid block, as SD.")
    attention_head_dim: int = hfield(32, "Channels per attention head (heads = channels / this).")
    norm_num_groups: int = hfield(16, "GroupNorm groups; must divide every level's channels.")
    # --- noise schedule (SD's)
    num_train_timesteps: int = hfield(1000, "Diffusion steps of the training schedule.")
    beta_start: float = hfield(0.00085, "First beta of the schedule (SD: 0.00085).")
    beta_end: float = hfield(0.012, "Last beta of the schedule (SD: 0.012).")
    beta_schedule: str = hfield("scaled_linear", "scaled_linear (SD) | linear | squaredcos_cap_v2.")
    prediction_type: str = hfield(
        "epsilon", "What the UNet predicts: epsilon (SD 1) | v_prediction (SD 2)."
    )
    # --- training
    max_steps: int = hfield(
        1400, "Optimizer steps in total (quick: ~19 min at ~0.81 s/step on 2 CPU cores)."
    )
    batch_size: int = hfield(64, "Latents per optimizer step, all processes and micro-batches.")
    grad_accum: int = hfield(1, "Micro-batches per optimizer step (gradient accumulation).")
    lr: float = hfield(2e-3, "Peak AdamW learning rate (linear warmup, then cosine decay to 0).")
    warmup_steps: int = hfield(100, "Linear warmup steps from 0 to lr.")
    weight_decay: float = hfield(1e-2, "AdamW weight decay (diffusers' example default).")
    grad_clip: float = hfield(1.0, "Clip the global gradient norm to this; 0 disables.")
    train_text_encoder: bool = hfield(
        True,
        "Fine-tune the text encoder with the UNet (diffusers' --train_text_encoder); the SD "
        "folder then holds the tuned copy. Needed here: the CLIP text tower barely separates "
        "shape words (its contrastive loss never needed them), so frozen it hides shape.",
    )
    text_encoder_init: str = hfield(
        "clip",
        "Where the text encoder starts: clip (the CLIP's text tower) | scratch (a CLIPTextModel "
        "of the same shape and tokenizer, randomly initialised, learnt with the UNet as Imagen's "
        "ablations and the issue-19 probe suggest); scratch needs train_text_encoder.",
    )
    text_encoder_lr: float = hfield(0.0, "Peak learning rate of the text encoder; 0 uses lr.")
    snr_gamma: float = hfield(
        5.0, "Min-SNR-gamma loss weighting (Hang et al. 2023; 5 recommended); 0 disables."
    )
    curriculum: float = hfield(
        0.0,
        "Share of max_steps, at the start, whose batches come only from single-object items "
        "(metadata count 1), so shape is learnt on one unoccluded object before scenes; 0: off. "
        "Probe u5 (800 steps, 0.5): shape 0.26 -> 0.355; the full quick run with 0.5 gained "
        "nothing (0.282 vs 0.270), so it is off. Data without a count field train on everything.",
    )
    caption_dropout: float = hfield(
        0.1, "Probability that a caption is replaced by the empty one (classifier-free guidance)."
    )
    ema_decay: float = hfield(0.999, "Largest EMA decay; unet/ holds the EMA weights. 0: no EMA.")
    ema_power: float = hfield(
        0.75, "EMA warmup: decay = 1 - (1 + step)^-power, capped at ema_decay (3/4 for short runs)."
    )
    mixed_precision: str = hfield("no", "Accelerate mixed precision: no | bf16 | fp16 (GPU).")
    gradient_checkpointing: bool = hfield(
        False, "Recompute activations in the backward pass: less memory, ~30% slower."
    )
    seed: int = hfield(0, "Seed of initialisation, data order, noise, timesteps and dropout.")
    max_items: int = hfield(0, "Use only the first N items of the data set; 0 uses all.")
    image_size: int = hfield(0, "Training image side; 0 uses the VAE's sample_size.")
    # --- bookkeeping
    checkpoint_every: int = hfield(
        1000, "Save a resumable checkpoint every N steps (and always at the end); 0: end only."
    )
    log_every: int = hfield(25, "Log loss and lr (progress bar, TensorBoard) every N steps.")
    sample_every: int = hfield(
        1000, "Log a grid of EMA samples to TensorBoard every N steps (and at the end); 0: never."
    )
    sample_n: int = hfield(8, "Images in a sample grid (the first distinct training captions).")
    sample_steps: int = hfield(25, "DDIM steps of the sample grid.")
    sample_guidance: float = hfield(4.0, "Classifier-free guidance scale of the sample grid.")

    PRESETS = {
        "micro": {
            "block_out_channels": [8, 16, 16],
            "attention_head_dim": 4,
            "norm_num_groups": 4,
            "max_steps": 2,
            "batch_size": 4,
            "warmup_steps": 1,
            "checkpoint_every": 1,
            "log_every": 1,
            "sample_every": 2,
            "sample_n": 2,
            "sample_steps": 2,
        },
        "quick": {},
        "gpu": {
            "block_out_channels": [128, 256, 256],
            "norm_num_groups": 32,
            "layers_per_block": 2,
            "attention_levels": [0, 1, 2],
            "attention_head_dim": 64,
            "max_steps": 30000,
            "batch_size": 256,
            "lr": 2e-4,
            "warmup_steps": 500,
            "mixed_precision": "bf16",
            "checkpoint_every": 5000,
            "sample_every": 2500,
        },
    }

    def validate(self) -> None:
        """Raise an ArtalignError naming the first bad value and its fix."""
        ch, groups, n = self.block_out_channels, self.norm_num_groups, len(self.block_out_channels)
        check_config(
            "UNetConfig",
            [
                (
                    self.prediction_type in PREDICTION_TYPES,
                    f"prediction_type must be one of {PREDICTION_TYPES}",
                ),
                (self.beta_schedule in BETA_SCHEDULES, f"beta_schedule: one of {BETA_SCHEDULES}"),
                (self.mixed_precision in MIXED_PRECISION, f"mixed_precision: {MIXED_PRECISION}"),
                (n >= 1 and all(c > 0 for c in ch), "block_out_channels: positive ints"),
                (
                    groups >= 1 and all(c % groups == 0 for c in ch),
                    f"norm_num_groups={groups} must divide every block_out_channels {ch}",
                ),
                (
                    all(0 <= i < n for i in self.attention_levels),
                    f"attention_levels must be level indices 0..{n - 1}",
                ),
                (self.attention_head_dim >= 1, "attention_head_dim must be >= 1"),
                (self.layers_per_block >= 1, "layers_per_block must be >= 1"),
                (self.num_train_timesteps >= 2, "num_train_timesteps must be >= 2"),
                (0 < self.beta_start < self.beta_end < 1, "need 0 < beta_start < beta_end < 1"),
                (self.max_steps >= 1, "max_steps must be >= 1"),
                (0.0 <= self.curriculum <= 1.0, "curriculum is a share of max_steps in [0, 1]"),
                (self.batch_size >= 1, "batch_size must be >= 1"),
                (self.grad_accum >= 1, "grad_accum must be >= 1"),
                (
                    self.batch_size % self.grad_accum == 0,
                    f"batch_size={self.batch_size} must be a multiple of grad_accum",
                ),
                (self.lr > 0, "lr must be > 0"),
                (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
                (self.weight_decay >= 0, "weight_decay must be >= 0"),
                (
                    self.text_encoder_init in TEXT_ENCODER_INITS,
                    f"text_encoder_init must be one of {TEXT_ENCODER_INITS}",
                ),
                (
                    self.text_encoder_init == "clip" or self.train_text_encoder,
                    "text_encoder_init=scratch needs train_text_encoder=true",
                ),
                (self.text_encoder_lr >= 0, "text_encoder_lr must be >= 0 (0 uses lr)"),
                (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables clipping)"),
                (self.snr_gamma >= 0, "snr_gamma must be >= 0 (0 disables min-SNR weighting)"),
                (0.0 <= self.caption_dropout < 1.0, "caption_dropout is a probability in [0, 1)"),
                (0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1) (0 disables EMA)"),
                (self.ema_power > 0, "ema_power must be > 0"),
                (self.max_items >= 0, "max_items must be >= 0"),
                (self.image_size >= 0, "image_size must be >= 0 (0: the VAE's sample_size)"),
                (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
                (self.log_every >= 1, "log_every must be >= 1"),
                (self.sample_every >= 0, "sample_every must be >= 0 (0 disables sample grids)"),
                (self.sample_n >= 1, "sample_n must be >= 1"),
                (self.sample_steps >= 1, "sample_steps must be >= 1"),
                (
                    self.sample_guidance >= 1 or self.sample_guidance == 0,
                    "sample_guidance must be >= 1 (or 0 for none)",
                ),
            ],
        )
