"""DDIM on a diffusers noise schedule, written out so the sampling loop can be read (and scored).

One DDIM step from x_t to x_{t-1} (Song et al. 2020, eq. 12), as `DDIMScheduler.step` does it:

    x0_hat  = model's predicted clean latent (from ε, x0 or v prediction; optionally clipped)
    ε_hat   = the matching noise estimate
    σ_t     = η · sqrt((1-ᾱ_prev)/(1-ᾱ_t) · (1 - ᾱ_t/ᾱ_prev))
    mean    = sqrt(ᾱ_prev) · x0_hat + sqrt(1 - ᾱ_prev - σ_t²) · ε_hat
    x_{t-1} = mean + σ_t · z,   z ~ N(0, I)

With η > 0 each step is a Gaussian policy, so log N(x_{t-1}; mean, σ_t²) is the per-step
log-probability DDPO needs. It is averaged over the latent dimensions, as kvablack/ddpo-pytorch's
`ddim_step_with_logprob` does: PPO's clip range (1e-4 there and here) is tuned for that scale,
and a sum would make every log-ratio D times larger (D = C·h·w, 16,384 for SD 1.5). Timesteps,
ᾱ and the first noise scale come from diffusers' `DDIMScheduler` built from the model folder's
scheduler config, so the chain is the pipeline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from base_models.errors import ArtalignError

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class StepCoefficients:
    """ᾱ_t, ᾱ_prev and σ_t of one step: 0-d tensors, or (B, 1, 1, 1) for per-sample steps."""

    alpha_t: torch.Tensor
    alpha_prev: torch.Tensor
    std: torch.Tensor


class DDIM:
    """The DDIM chain of one noise schedule: timesteps, step coefficients, the step mean."""

    def __init__(self, scheduler_config: dict[str, Any]) -> None:
        from diffusers import DDIMScheduler

        self.scheduler = DDIMScheduler.from_config(scheduler_config)
        cfg = self.scheduler.config
        if cfg.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ArtalignError(
                f"scheduler prediction_type {cfg.prediction_type!r} is not epsilon, sample or "
                "v_prediction; fix scheduler/scheduler_config.json"
            )
        self.prediction_type: str = cfg.prediction_type
        self.clip_range: float | None = cfg.clip_sample_range if cfg.clip_sample else None
        self.num_train_timesteps: int = cfg.num_train_timesteps
        self.alphas_cumprod: torch.Tensor = self.scheduler.alphas_cumprod  # (T,) float32
        self.final_alpha_cumprod: torch.Tensor = self.scheduler.final_alpha_cumprod
        self.init_noise_sigma = self.scheduler.init_noise_sigma

    def timesteps(self, steps: int) -> torch.Tensor:
        """The `steps` timesteps the pipeline visits, high to low (long tensor, CPU)."""
        self.scheduler.set_timesteps(steps)
        return self.scheduler.timesteps.clone()

    def coefficients(self, t: torch.Tensor | int, steps: int, eta: float) -> StepCoefficients:
        """ᾱ_t, ᾱ_prev, σ_t for timestep(s) `t` of a `steps`-step chain.

        A scalar `t` gives 0-d tensors (as DDIMScheduler.step uses); a (B,) tensor gives
        (B, 1, 1, 1) tensors, for a batch of steps drawn from different points of the chain.
        """
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        prev = t - self.num_train_timesteps // steps
        alpha_t = self.alphas_cumprod[t]
        alpha_prev = torch.where(
            prev >= 0, self.alphas_cumprod[prev.clamp_min(0)], self.final_alpha_cumprod
        )
        variance = (1 - alpha_prev) / (1 - alpha_t) * (1 - alpha_t / alpha_prev)
        std = eta * variance ** (0.5)
        if t.ndim:
            alpha_t, alpha_prev, std = (x.view(-1, 1, 1, 1) for x in (alpha_t, alpha_prev, std))
        return StepCoefficients(alpha_t, alpha_prev, std)

    def chain(self, steps: int, eta: float) -> tuple[torch.Tensor, list[StepCoefficients]]:
        """The timesteps of a chain and each step's coefficients, computed once per sample call."""
        timesteps = self.timesteps(steps)
        return timesteps, [self.coefficients(int(t), steps, eta) for t in timesteps]

    def step_mean(
        self, model_output: torch.Tensor, x_t: torch.Tensor, c: StepCoefficients
    ) -> torch.Tensor:
        """The mean of x_{t-1} given x_t and the model's (guided) output, as DDIMScheduler.step."""
        # 0-d coefficients act as scalars (as in the scheduler); per-sample ones follow x_t.
        # The step is computed in x_t's dtype: under autocast the UNet's output is half
        # precision, and a 0-d float32 scalar would leave the arithmetic in it while (B,)
        # coefficients promote to float32, so sampling and re-scoring would differ.
        model_output = model_output.to(x_t.dtype)
        alpha_t, alpha_prev, std = (_like(x, x_t) for x in (c.alpha_t, c.alpha_prev, c.std))
        beta_t = 1 - alpha_t
        if self.prediction_type == "epsilon":
            x0 = (x_t - beta_t ** (0.5) * model_output) / alpha_t ** (0.5)
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (x_t - alpha_t ** (0.5) * x0) / beta_t ** (0.5)
        else:  # v_prediction
            x0 = (alpha_t**0.5) * x_t - (beta_t**0.5) * model_output
            eps = (alpha_t**0.5) * model_output + (beta_t**0.5) * x_t
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        direction = (1 - alpha_prev - std**2) ** (0.5) * eps
        return alpha_prev ** (0.5) * x0 + direction


def _like(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return coef if coef.ndim == 0 else coef.to(x.device, x.dtype)


def gaussian_log_prob(x_prev: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x_prev; mean, std²·I) per latent dimension: the mean over all but the batch dim,
    (B,), float32. This is the reference's convention (see the module docstring): the log-density
    of the whole latent divided by its size D.

    A step with σ = 0 (η = 0, or a last step onto ᾱ = 1) is deterministic; its log-prob is 0
    by convention, so it adds nothing to a policy gradient.
    """
    x, m = x_prev.float(), mean.float()
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    safe = s.clamp_min(1e-20)
    lp = -((x - m) ** 2) / (2 * safe**2) - torch.log(safe) - _LOG_SQRT_2PI
    lp = lp.flatten(1).mean(1)
    zero = (s == 0).reshape(-1).expand(lp.shape[0]) if s.ndim else (s == 0).expand(lp.shape[0])
    return torch.where(zero, torch.zeros_like(lp), lp)
