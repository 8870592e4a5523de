"""What `Generator.sample` returns: images, and on request the DDIM trajectory with log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from base_models.imaging import to_pil


@dataclass
class Trajectory:
    """The sampled chain of a batch, what DDPO needs to score and re-score each step.

    Step i goes from latents[:, i] at timesteps[i] to latents[:, i + 1]; log_probs[:, i] is
    log N(latents[:, i + 1]; mean_i, σ_i²) averaged over latent dims (ddim.gaussian_log_prob),
    recorded while sampling.
    `Generator.step_log_prob` recomputes it under the current weights (PPO's ratio).
    """

    latents: torch.Tensor  # (B, S + 1, C, h, w): x_T ... x_0, on the CPU
    log_probs: torch.Tensor  # (B, S) float32
    timesteps: torch.Tensor  # (S,) long
    prompt_embeds: torch.Tensor  # (B, T, D) conditional text states
    steps: int
    guidance: float
    eta: float


@dataclass
class SampleOutput:
    """Images of one `sample` call, in prompt order, with the prompt and seed of each."""

    pixels: torch.Tensor  # (B, 3, H, W) float32 in [0, 1], on the CPU
    prompts: list[str]
    seeds: list[int]
    trajectory: Trajectory | None = None

    @property
    def images(self) -> list[Image.Image]:
        """PIL images, rounded as diffusers' image processor does (x·255, round, uint8)."""
        return to_pil(self.pixels)
