"""Frozen inputs of UNet training, computed once per run: VAE posteriors and caption states.

The VAE does not train (nor, by default, does the text encoder), so encoding every image and
caption at every step
(as diffusers' train_text_to_image does) repeats the same work each epoch. Here each image's
posterior (mean and log-variance, SD's `latent_dist`) is stored, and a fresh latent is
*sampled* from it every time the image is drawn, exactly as `latent_dist.sample()` would; each
distinct caption, plus the empty one for guidance, is encoded once to its per-token states
(and its token ids are kept, for runs that train the text encoder and so must re-encode).
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
    for start in tqdm(
        range(0, len(pixels), batch_size), desc="encode images", unit="batch", mininterval=2.0
    ):
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

    states: (U, T, D) float32; ids: (U, T) their token ids (for a text encoder that trains);
    index: (N,) the row of each training item's caption.
    """

    texts: list[str]
    states: torch.Tensor
    ids: torch.Tensor
    index: torch.Tensor
    empty: int = 0


def token_ids(tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Padded token ids (B, T), as StableDiffusionPipeline tokenises prompts."""
    return tokenizer(
        list(texts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_ids(text_encoder: Any, ids: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """last_hidden_state (B, T, D) float32 on the CPU of token ids (B, T)."""
    device = text_encoder.device
    return torch.cat(
        [text_encoder(chunk.to(device))[0].float().cpu() for chunk in ids.split(batch_size)]
    )


def caption_bank(text_encoder: Any, tokenizer: Any, captions: Sequence[str]) -> CaptionBank:
    """Encode the distinct captions (the empty one first) and index every item's caption."""
    distinct = [""] + sorted(set(captions) - {""})
    row = {t: i for i, t in enumerate(distinct)}
    ids = token_ids(tokenizer, distinct)
    index = torch.tensor([row[t] for t in captions], dtype=torch.long)
    return CaptionBank(texts=distinct, states=encode_ids(text_encoder, ids), ids=ids, index=index)
