"""Frozen inputs of UNet training, computed once per run: VAE posteriors and caption states.

The VAE and the text encoder do not train, so encoding every image and caption at every step
(as diffusers' train_text_to_image does) repeats the same work each epoch. Here each image's
posterior (mean and log-variance, SD's `latent_dist`) is stored, and a fresh latent is
*sampled* from it every time the image is drawn, exactly as `latent_dist.sample()` would; each
distinct caption, plus the empty one for guidance, is encoded once to its per-token states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from tqdm import tqdm

from base_models.vae.data import to_model_range


@torch.no_grad()
def encode_posteriors(vae: Any, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Each image's posterior parameters (N, 2C, h, w) float32 on the CPU: [mean | logvar]."""
    device = vae.device
    out = []
    for start in tqdm(range(0, len(pixels), batch_size), desc="encode images", unit="batch",
                      mininterval=2.0):  # fmt: skip
        x = to_model_range(pixels[start : start + batch_size]).to(device, vae.dtype)
        out.append(vae.encode(x).latent_dist.parameters.float().cpu())
    return torch.cat(out)


def sample_latents(
    posteriors: torch.Tensor, scaling_factor: float, generator: torch.Generator | None
) -> torch.Tensor:
    """A latent sample of each posterior (B, C, h, w), times the VAE's scaling factor."""
    return DiagonalGaussianDistribution(posteriors).sample(generator) * scaling_factor


@dataclass
class CaptionBank:
    """Per-token states of each distinct caption; row `empty` is the empty caption "".

    states: (U, T, D) float32; index: (N,) the row of each training item's caption.
    """

    texts: list[str]
    states: torch.Tensor
    index: torch.Tensor
    empty: int = 0


@torch.no_grad()
def encode_texts(
    text_encoder: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 512
) -> torch.Tensor:
    """last_hidden_state (B, T, D) of padded captions, as StableDiffusionPipeline encodes them."""
    device = text_encoder.device
    out = []
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(
            list(texts[start : start + batch_size]),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        out.append(text_encoder(ids.to(device))[0].float().cpu())
    return torch.cat(out)


def caption_bank(text_encoder: Any, tokenizer: Any, captions: Sequence[str]) -> CaptionBank:
    """Encode the distinct captions (the empty one first) and index every item's caption."""
    distinct = [""] + sorted(set(captions) - {""})
    row = {t: i for i, t in enumerate(distinct)}
    states = encode_texts(text_encoder, tokenizer, distinct)
    index = torch.tensor([row[t] for t in captions], dtype=torch.long)
    return CaptionBank(texts=distinct, states=states, index=index, empty=0)
