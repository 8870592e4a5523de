"""The VAE's figures: reconstruction PSNR on held-out images, and the latent scaling factor.

PSNR is on 8-bit pixels scaled to [0, 1] (the reconstruction clamped and rounded as a saved
image would be): `psnr` is the mean of per-image PSNRs, the usual figure for autoencoders, and
`psnr_pooled` is 10 log10(1 / MSE over all pixels), which weighs the hardest images more.

The scaling factor is SD's recipe: 1 / std of latent samples over training images, so the
UNet's inputs have unit variance (SD-1's 0.18215 came from the same computation).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.vae.data import to_model_range, to_pixels
from base_models.world.dataset import DataConfig, generate_item


def heldout_pixels(n: int, size: int, seed: int) -> torch.Tensor:
    """`n` fresh procedural images (N, 3, size, size) uint8 from a seed no data set uses."""
    cfg = DataConfig(n=n, seed=seed, size=size, split="train")
    sampler = cfg.sampler()
    images = [np.asarray(generate_item(cfg, sampler, i)[0].convert("RGB")) for i in range(n)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def reconstruction_metrics(vae: Any, pixels: torch.Tensor, batch_size: int = 250) -> dict:
    """PSNR / MSE of decode(mode(encode(x))) and the mean KL per image, on uint8 `pixels`."""
    device = vae.device
    mses, kls = [], []
    for start in range(0, len(pixels), batch_size):
        chunk = pixels[start : start + batch_size]
        posterior = vae.encode(to_model_range(chunk).to(device)).latent_dist
        recon = to_pixels(vae.decode(posterior.mode()).sample.cpu())
        err = (recon.float() - chunk.float()) / 255.0
        mses.append(err.pow(2).flatten(1).mean(1))
        kls.append(posterior.kl().float().cpu())
    mse = torch.cat(mses)  # (N,)
    per_image = 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
    pooled = mse.mean().item()
    return {
        "psnr": per_image.mean().item(),
        "psnr_pooled": 10 * math.log10(1.0 / max(pooled, 1e-10)),
        "psnr_min": per_image.min().item(),
        "mse": pooled,
        "kl": torch.cat(kls).mean().item(),
    }


@torch.no_grad()
def latent_scaling_factor(
    vae: Any, pixels: torch.Tensor, seed: int = 0, batch_size: int = 250
) -> float:
    """1 / std of latent samples (all elements pooled) over uint8 `pixels`: SD's recipe."""
    if len(pixels) < 2:
        raise ArtalignError("the scaling factor needs at least 2 images")
    generator = torch.Generator(device=vae.device).manual_seed(seed)
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(pixels), batch_size):
        x = to_model_range(pixels[start : start + batch_size]).to(vae.device)
        z = vae.encode(x).latent_dist.sample(generator=generator).double()
        total += z.sum().item()
        total_sq += z.pow(2).sum().item()
        count += z.numel()
    var = total_sq / count - (total / count) ** 2
    return 1.0 / math.sqrt(max(var, 1e-12))


def vae_folder(path: str | Path) -> Path:
    """The folder holding the AutoencoderKL's config.json: `path` itself, or its `vae/`.

    So `--vae` takes the out folder of train-vae, its vae/ folder, or any SD folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtalignError(f"VAE folder {path} does not exist; train one with train-vae")
    for folder in (path, path / "vae"):
        config = folder / "config.json"
        if config.is_file():
            import json

            try:
                name = json.loads(config.read_text()).get("_class_name")
            except (OSError, json.JSONDecodeError, AttributeError):
                name = None
            if name != "AutoencoderKL":
                raise ArtalignError(
                    f"{config} describes {name or 'no diffusers model'}, not an AutoencoderKL; "
                    "pass the --out of train-vae (or an SD folder)"
                )
            return folder
    raise ArtalignError(
        f"{path} holds no VAE (no config.json there or in {path / 'vae'}); pass the --out "
        "of train-vae or an SD folder"
    )


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """A diffusers AutoencoderKL from a local folder (safetensors only), eval mode, no grads."""
    from diffusers import AutoencoderKL

    folder = vae_folder(path)
    try:
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ArtalignError(f"cannot load the VAE in {folder} ({type(e).__name__}: {e})") from e
    return vae.to(device).eval().requires_grad_(False)
