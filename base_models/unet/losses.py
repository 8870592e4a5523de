"""The denoising objective as pure tensor functions: target, min-SNR-γ weights, loss, dropout.

With x_t = √ᾱ_t·x_0 + √(1-ᾱ_t)·ε and SNR(t) = ᾱ_t / (1-ᾱ_t):
- ε-prediction regresses ε; v-prediction (Salimans & Ho 2022) regresses v = √ᾱ_t·ε - √(1-ᾱ_t)·x_0.
- Min-SNR-γ (Hang et al. 2023) weighs each sample's x_0-space loss by min(SNR, γ). An
  ε-space MSE already equals SNR times the x_0-space MSE, and a v-space MSE equals (SNR + 1)
  times it, so the per-sample weights on the regressed target's MSE are
      ε:  min(SNR, γ) / SNR          v:  min(SNR, γ) / (SNR + 1)
  (the same as diffusers' train_text_to_image.py).
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction")


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """SNR(t) = ᾱ_t / (1 - ᾱ_t) for each timestep (B,), float32."""
    a = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return a / (1.0 - a)


def min_snr_weights(snr_t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights (B,) of min-SNR-γ for the regressed target; gamma <= 0: ones."""
    if gamma <= 0:
        return torch.ones_like(snr_t)
    clipped = snr_t.clamp(max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr_t
    if prediction_type == "v_prediction":
        return clipped / (snr_t + 1.0)
    raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")


def velocity(
    alphas_cumprod: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """v = √ᾱ_t·ε - √(1-ᾱ_t)·x_0, shaped like x0 (B, C, h, w)."""
    a = alphas_cumprod.to(x0.device)[timesteps].float().view(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * noise - (1.0 - a).sqrt() * x0


def training_target(
    prediction_type: str,
    alphas_cumprod: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """What the UNet regresses for `prediction_type`: ε, or v."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return velocity(alphas_cumprod, x0, noise, timesteps)
    raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")


def diffusion_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of (weight ×) each sample's MSE over its elements, in float32."""
    per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


def drop_captions(
    caption_index: torch.Tensor, empty_index: int, p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Replace each caption by the empty caption with probability p (classifier-free guidance).

    Always draws one uniform per sample, so the random stream does not depend on p.
    """
    drop = torch.rand(caption_index.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(caption_index, empty_index), caption_index)
