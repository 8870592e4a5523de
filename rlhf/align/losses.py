"""The alignment trainers' losses: pure tensor functions, tested on hand-computed values.

- `ppo_clip_loss`: DDPO's per-step policy loss (Black et al. 2023, as kvablack/ddpo-pytorch):
  the importance ratio r = exp(log π_θ(x_{t-1}|x_t) - log π_old(x_{t-1}|x_t)) of one denoising
  step, with the PPO-clip surrogate max(-A·r, -A·clip(r, 1-ε, 1+ε)), averaged over the batch.
- `diffusion_dpo_loss`: Diffusion-DPO (Wallace et al. 2023): the winner and loser are noised with
  the same noise and timestep; with e = ‖ε - ε_θ(x_t)‖² per sample,
  loss = -log σ(-β/2 · ((e_θ(w) - e_θ(l)) - (e_ref(w) - e_ref(l)))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ppo_clip_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip loss of one step for a batch (B,); returns (loss, info).

    info: `approx_kl` (½·mean((log r)²), as ddpo-pytorch logs it), `clipfrac` (share of samples
    whose ratio left [1-ε, 1+ε]) and `ratio` (mean ratio); all detached.
    """
    log_ratio = log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = torch.mean(torch.maximum(unclipped, clipped))
    info = {
        "approx_kl": 0.5 * torch.mean(log_ratio.detach() ** 2),
        "clipfrac": torch.mean((torch.abs(ratio.detach() - 1.0) > clip_range).float()),
        "ratio": ratio.detach().mean(),
    }
    return loss, info


def diffusion_dpo_loss(
    model_err_w: torch.Tensor,
    model_err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    beta: float,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Diffusion-DPO loss from per-sample squared errors (B,) of model and reference.

    `weight` (B,) weights pairs (e.g. ties kept at a lower weight); the loss is their weighted
    mean. info: `implicit_acc` (share of pairs where the model moved toward the winner more than
    the reference did) and `margin` (mean of the inside term before β), detached.
    """
    model_diff = model_err_w - model_err_l
    ref_diff = ref_err_w - ref_err_l
    inside = -0.5 * beta * (model_diff - ref_diff)
    losses = -F.logsigmoid(inside)
    if weight is None:
        loss = losses.mean()
    else:
        loss = (losses * weight).sum() / weight.sum().clamp_min(1e-12)
    info = {
        "implicit_acc": (inside.detach() > 0).float().mean(),
        "margin": (model_diff - ref_diff).detach().mean(),
    }
    return loss, info


def kl_to_reference(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(π_θ ‖ π_ref) of one Gaussian DDIM step with shared σ, per latent dimension:
    mean over dims of (μ_θ - μ_ref)² / (2σ²), per sample (B,).

    Per dimension, like the step log-probs (`gaussian_log_prob`), so `kl_coef` does not depend
    on the latent size. Steps with σ = 0 contribute 0 (deterministic: no policy gradient)."""
    s = torch.as_tensor(std, dtype=torch.float32, device=mean.device)
    sq = ((mean.float() - ref_mean.float()) ** 2).flatten(1).mean(1)
    s_flat = s.reshape(-1) if s.ndim else s.expand(sq.shape[0])
    s_flat = s_flat.expand(sq.shape[0]) if s_flat.numel() == 1 else s_flat
    return torch.where(s_flat > 0, sq / (2 * s_flat.clamp_min(1e-20) ** 2), torch.zeros_like(sq))
