"""A tiny random Stable Diffusion folder for tests (generator, DDPO, DPO, evaluation).

`make_tiny_sd_folder(path)` writes what `StableDiffusionPipeline.save_pretrained` writes, with
parts small enough that a 2-step sample takes milliseconds on a CPU:
UNet (8, 16) channels on 8x8 latents, a 3-block VAE (32px <-> 8x8x4), the micro CLIP's text
tower exported as in `base_models.text_encoder`, and SD's DDIM noise schedule.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch


def tiny_unet(cross_attention_dim: int, channels: tuple[int, int] = (8, 16)):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=2,
        norm_num_groups=4,
    )


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )


def sd_scheduler():
    """SD 1.x/2.x's DDIM settings (scaled-linear betas, no clipping, steps_offset 1)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def make_tiny_sd_folder(
    path: str | Path, seed: int = 0, unet_channels: tuple[int, int] = (8, 16)
) -> Path:
    """Write a random tiny SD folder to `path`; the same seed gives the same weights."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    from base_models.clip import model_config
    from base_models.clip.train import build_model
    from base_models.text_encoder import export_text_encoder

    torch.manual_seed(seed)
    clip = build_model(model_config("artalign-micro")).eval()
    with tempfile.TemporaryDirectory() as tmp:
        export_text_encoder(clip, tmp)
        text_encoder = CLIPTextModel.from_pretrained(Path(tmp) / "text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(Path(tmp) / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_unet(text_encoder.config.hidden_size, unet_channels),
        scheduler=sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return Path(path)
