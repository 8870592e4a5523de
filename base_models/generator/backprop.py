"""Sampling with gradients through the last K denoising steps: what reward backpropagation
(DRaFT-K, AlignProp) differentiates.

The chain is the generator's DDIM chain with the same initial noise per seed and, at η > 0, the
same step noise as `Generator.sample`, so the final image equals `sample()`'s for the same seeds.
Steps before the last K run without gradients (DRaFT's truncation: the gradient stops at
x_{t_K}); the last K run with them. With `checkpointing`, each differentiable UNet call keeps
only its inputs and recomputes its activations in the backward pass (torch.utils.checkpoint),
so backpropagating through the whole chain (AlignProp, K = steps) costs memory for K latents,
not K sets of UNet activations.

DRaFT-LV (Clark et al. 2024, "Directly Fine-Tuning Diffusion Models on Differentiable Rewards",
§4.3): the chain runs without gradients to its clean latent x_0; `lv_draws` fresh noisings of x_0
to the last step's timestep are each denoised by one differentiable step, which averages out
the noise of the one-step gradient at the cost of a larger decode batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor
from torch.utils.checkpoint import checkpoint

from base_models.errors import ArtalignError
from base_models.generator.ddim import StepCoefficients
from base_models.generator.generator import Generator, check_sampling_args


@dataclass
class BackpropSample:
    """Images with their autograd graph back to the LoRA weights, and the fidelity term."""

    pixels: torch.Tensor  # (B · max(1, lv_draws), 3, H, W) float32 in [0, 1], on the device
    prompts: list[str]  # the prompt of each image (repeated per LV draw)
    drift: torch.Tensor  # 0-d: mean squared (adapted - base) guided output over the grad steps


def sample_with_grad(
    gen: Generator,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int,
    guidance: float,
    eta: float,
    grad_steps: int = 1,
    checkpointing: bool = False,
    lv_draws: int = 0,
    lv_seed: int = 0,
    drift: bool = False,
) -> BackpropSample:
    """Sample one image per (prompt, seed), differentiable through the last `grad_steps` steps
    (0 or >= steps: all of them).

    lv_draws > 0 (DRaFT-LV, with grad_steps = 1): the gradient flows through that many one-step
    denoisings of fresh noisings of the final latent, seeded by `lv_seed`. drift: also return the
    mean squared difference between the adapted and the base model's guided outputs at the
    differentiable steps (a KL to the base policy up to the step variance), which costs one
    base-model forward per step.
    """
    prompts = list(prompts)
    if len(seeds) != len(prompts):
        raise ArtalignError(f"{len(seeds)} seeds for {len(prompts)} prompts; pass one per prompt")
    check_sampling_args(
        len(prompts), steps, guidance, eta, len(prompts), gen.ddim.num_train_timesteps
    )
    if lv_draws and grad_steps != 1:
        raise ArtalignError(f"lv_draws needs grad_steps=1 (DRaFT-LV), got grad_steps={grad_steps}")
    k = steps if grad_steps <= 0 else min(grad_steps, steps)
    timesteps, coeffs = gen.ddim.chain(steps, eta)
    embeds = gen.guidance_embeds(gen.encode_prompts(prompts), guidance)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    size = gen.unet.config.sample_size
    shape = (len(prompts), gen.unet.config.in_channels, size, size)
    x = randn_tensor(shape, generator=generators, device=gen.device, dtype=gen.dtype)
    x = x * gen.ddim.init_noise_sigma
    drifts: list[torch.Tensor] = []
    chain = list(zip(timesteps.to(gen.device), coeffs, strict=True))
    for i, (t, c) in enumerate(chain):
        noise = None
        if eta > 0:  # drawn in sample()'s order: one draw per step from each image's generator
            noise = randn_tensor(x.shape, generator=generators, device=gen.device, dtype=x.dtype)
        differentiable = i >= len(chain) - k and not lv_draws
        x = _step(
            gen, x, t, c, embeds, guidance, noise, differentiable, checkpointing, drift, drifts
        )
    if lv_draws:
        x, embeds = _lv_latents(gen, x.detach(), chain[-1], embeds, guidance, lv_draws, lv_seed)
        t, c = chain[-1]
        noise = None
        if eta > 0:
            rng = torch.Generator().manual_seed(int(lv_seed) + 1)
            noise = randn_tensor(x.shape, generator=rng, device=gen.device, dtype=x.dtype)
        x = _step(gen, x, t, c, embeds, guidance, noise, True, checkpointing, drift, drifts)
        prompts = [p for _ in range(lv_draws) for p in prompts]
    value = torch.stack(drifts).mean() if drifts else torch.zeros((), device=gen.device)
    return BackpropSample(gen.decode_pixels(x), prompts, value)


def _step(
    gen: Generator,
    x: torch.Tensor,
    t: torch.Tensor,
    c: StepCoefficients,
    embeds: torch.Tensor,
    guidance: float,
    noise: torch.Tensor | None,
    differentiable: bool,
    checkpointing: bool,
    drift: bool,
    drifts: list[torch.Tensor],
) -> torch.Tensor:
    """One DDIM step x_t -> x_{t-1}, with or without gradients."""
    if not differentiable:
        with torch.no_grad():
            out = gen.guided_output(x, t, embeds, guidance)
    elif checkpointing:
        out = checkpoint(gen.guided_output, x, t, embeds, guidance, use_reentrant=False)
    else:
        out = gen.guided_output(x, t, embeds, guidance)
    if differentiable and drift:
        with torch.no_grad(), gen.lora_disabled():
            base = gen.guided_output(x.detach(), t, embeds, guidance)
        drifts.append(((out.float() - base.float()) ** 2).mean())
    mean = gen.ddim.step_mean(out, x, c)
    return mean if noise is None else mean + c.std * noise


def _lv_latents(
    gen: Generator,
    x0: torch.Tensor,
    last: tuple[torch.Tensor, StepCoefficients],
    embeds: torch.Tensor,
    guidance: float,
    draws: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`draws` noisings of x0 to the last step's timestep (q(x_t | x_0)), and the embeddings
    repeated to match: (draws · B, C, h, w) and the embeds of that batch."""
    _, c = last
    rng = torch.Generator().manual_seed(int(seed))
    xs = x0.repeat(draws, 1, 1, 1)
    eps = randn_tensor(xs.shape, generator=rng, device=gen.device, dtype=xs.dtype)
    alpha = c.alpha_t.to(gen.device, xs.dtype)
    noisy = alpha.sqrt() * xs + (1 - alpha).sqrt() * eps
    if guidance > 1:  # [uncond; cond] halves, each repeated per draw
        uncond, cond = embeds.chunk(2)
        return noisy, torch.cat([uncond.repeat(draws, 1, 1), cond.repeat(draws, 1, 1)])
    return noisy, embeds.repeat(draws, 1, 1)
