"""The UNet and the noise schedules, built from a UNetConfig.

Training uses SD's DDPM schedule (1000 steps, scaled-linear betas 0.00085..0.012); the saved
folder's scheduler is the DDIMScheduler on the same betas with SD's sampling settings
(set_alpha_to_one False, steps_offset 1, no clipping) and the same prediction_type.
"""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from base_models.unet.config import UNetConfig


def block_types(cfg: UNetConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Down and up block names: cross-attention blocks at the levels in cfg.attention_levels.

    Level 0 is the full latent resolution; the up path mirrors the down path.
    """
    levels = range(len(cfg.block_out_channels))
    down = tuple(
        "CrossAttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in levels
    )
    up = tuple("CrossAttnUpBlock2D" if i in cfg.attention_levels else "UpBlock2D" for i in levels)
    return down, up[::-1]


def build_unet(
    cfg: UNetConfig, cross_attention_dim: int, sample_size: int, latent_channels: int
) -> UNet2DConditionModel:
    """A randomly initialised UNet2DConditionModel for latents (C, sample_size, sample_size)."""
    down, up = block_types(cfg)
    # diffusers' historical naming: UNet2DConditionModel's `attention_head_dim` is the number
    # of heads per block (SD-2 configs say [5, 10, 20, 20] for 64-channel heads).
    heads = tuple(max(1, c // cfg.attention_head_dim) for c in cfg.block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn" if cfg.mid_attention else "UNetMidBlock2D",
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads,
    )


def noise_scheduler(cfg: UNetConfig) -> DDPMScheduler:
    """The training noise schedule (SD's by default)."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def sampling_scheduler(train_scheduler: DDPMScheduler) -> DDIMScheduler:
    """The DDIMScheduler saved with the model: the training betas, SD's sampling settings."""
    return DDIMScheduler.from_config(
        train_scheduler.config,
        set_alpha_to_one=False,
        steps_offset=1,
        clip_sample=False,
        prediction_type=train_scheduler.config.prediction_type,
    )


def scheduler_dict(scheduler: Any) -> dict[str, Any]:
    """A scheduler's config as a dict with its class name, as scheduler_config.json holds it."""
    return {"_class_name": type(scheduler).__name__, **dict(scheduler.config)}
