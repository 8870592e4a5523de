"""The one generator interface of artalign: prompts + seeds -> images, optionally with log-probs.

`Generator` wraps a Stable Diffusion folder (see sd_folder.py) and samples with DDIM (ddim.py)
in a loop that mirrors `StableDiffusionPipeline.__call__`: each image's initial latent comes
from its own `torch.Generator().manual_seed(seed)` (via diffusers' `randn_tensor`) scaled by
`init_noise_sigma`, and classifier-free guidance runs the unconditional ("" prompt) and
conditional halves as one UNet forward. So `sample([p], [s], eta=0)` gives the image of
`pipe(p, generator=torch.Generator().manual_seed(s))`, and η > 0 draws the step noise from the
same generators as the pipeline does. LoRA adapters (lora.py) attach, detach and switch off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.generator import lora as lora_lib
from base_models.generator.ddim import DDIM, StepCoefficients, gaussian_log_prob
from base_models.generator.outputs import SampleOutput, Trajectory
from base_models.generator.sd_folder import SDComponents, load_sd_folder


def check_sampling_args(
    n_prompts: int, steps: int, guidance: float, eta: float, batch_size: int, max_steps: int
) -> None:
    """Refuse settings the sampler cannot honour, with the valid range in the message."""
    if n_prompts < 1:
        raise ArtalignError("no prompts given; pass at least one prompt")
    if not 1 <= steps <= max_steps:
        raise ArtalignError(f"steps must be between 1 and {max_steps}, got {steps}")
    if not (guidance >= 1 or guidance == 0):
        raise ArtalignError(f"guidance must be >= 1 (1 or 0 turns it off), got {guidance}")
    if not 0 <= eta <= 1:
        raise ArtalignError(f"eta must be between 0 (deterministic DDIM) and 1, got {eta}")
    if batch_size < 1:
        raise ArtalignError(f"batch size must be >= 1, got {batch_size}")


class Generator:
    """A text-to-image latent diffusion model with a readable DDIM sampler and LoRA adapters."""

    def __init__(
        self, parts: SDComponents, device: str | torch.device = "cpu", dtype=torch.float32
    ) -> None:
        self.path = parts.path
        self.unet, self.vae = parts.unet, parts.vae
        self.text_encoder, self.tokenizer = parts.text_encoder, parts.tokenizer
        self.ddim = DDIM(parts.scheduler_config)
        self.vae_scale_factor = parts.vae_scale_factor
        self.device, self.dtype = torch.device(device), dtype
        self.lora_path: Path | None = None  # the folder of the attached LoRA, if one was loaded

    @classmethod
    def from_folder(
        cls, path: str | Path, device: str | torch.device = "cpu", dtype=torch.float32
    ) -> Generator:
        """Load a local SD folder (ours or any SD-1.x/2.x diffusers folder)."""
        return cls(load_sd_folder(path, device=device, dtype=dtype), device=device, dtype=dtype)

    # --- text ---------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Per-token text states (B, T, D), as the pipeline conditions on (last_hidden_state)."""
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.device))[0].to(self.dtype)

    def unconditional_embedding(self) -> torch.Tensor:
        """The empty prompt's states (1, T, D): the unconditional half of guidance."""
        return self.encode_prompts([""])

    def guidance_embeds(self, cond: torch.Tensor, guidance: float) -> torch.Tensor:
        """[uncond; cond] (2B, T, D) when guidance is on, else cond (B, T, D)."""
        if guidance <= 1:
            return cond
        uncond = self.unconditional_embedding().expand(cond.shape[0], -1, -1)
        return torch.cat([uncond, cond.to(self.device, self.dtype)])

    # --- one denoising step -------------------------------------------------------------
    def guided_output(
        self, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, guidance: float
    ) -> torch.Tensor:
        """The UNet's (ε / x0 / v) output with classifier-free guidance: one forward for both.

        `embeds` comes from `guidance_embeds`; `t` is a 0-d timestep or one per sample (B,).
        """
        cfg = guidance > 1
        x_in = torch.cat([latents] * 2) if cfg else latents
        t_in = torch.cat([t] * 2) if cfg and t.ndim else t
        out = self.unet(x_in, t_in, encoder_hidden_states=embeds, return_dict=False)[0]
        if cfg:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        return out

    def step_distribution(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        *,
        steps: int,
        guidance: float,
        eta: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, σ) of the Gaussian step x_t -> x_{t-1} under the current weights.

        `timesteps` is one timestep per sample (B,) or a 0-d tensor; `steps`, `guidance`, `eta`
        must be those the trajectory was sampled with. σ is 0-d or (B, 1, 1, 1).
        """
        device = self.device
        x_t = latents.to(device, self.dtype)
        t = torch.as_tensor(timesteps, device=device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        embeds = self.guidance_embeds(prompt_embeds.to(device, self.dtype), guidance)
        out = self.guided_output(x_t, t, embeds, guidance)
        c = self.ddim.coefficients(t.cpu(), steps, eta)
        return self.ddim.step_mean(out, x_t, c), c.std.to(device)

    def step_log_prob(
        self,
        latents: torch.Tensor,
        next_latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        *,
        steps: int,
        guidance: float,
        eta: float,
    ) -> torch.Tensor:
        """log p(next_latents | latents) (B,) under the current weights (differentiable).

        This is PPO's new log-prob in DDPO; arguments as `step_distribution`.
        """
        mean, std = self.step_distribution(
            latents, timesteps, prompt_embeds, steps=steps, guidance=guidance, eta=eta
        )
        return gaussian_log_prob(next_latents.to(self.device), mean, std)

    # --- sampling -----------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int] | int = 0,
        *,
        steps: int = 50,
        guidance: float = 7.5,
        eta: float = 0.0,
        batch_size: int = 8,
        height: int | None = None,
        width: int | None = None,
        return_trajectory: bool = False,
    ) -> SampleOutput:
        """One image per prompt; `seeds` gives one seed per prompt (an int s means s, s+1, ...).

        Images come back in prompt order whatever the batch size: each image depends only on
        its prompt and seed. `return_trajectory` adds the latents and per-step log-probs.
        """
        if isinstance(prompts, str) or any(not isinstance(p, str) for p in prompts):
            raise ArtalignError("prompts must be a list of strings")
        prompts = list(prompts)
        seeds = [seeds + i for i in range(len(prompts))] if isinstance(seeds, int) else list(seeds)
        if len(seeds) != len(prompts):
            raise ArtalignError(
                f"{len(seeds)} seeds for {len(prompts)} prompts; pass one per prompt"
            )
        max_steps = self.ddim.num_train_timesteps
        check_sampling_args(len(prompts), steps, guidance, eta, batch_size, max_steps)
        size = self.unet.config.sample_size * self.vae_scale_factor
        height, width = height or size, width or size
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ArtalignError(f"height and width must be multiples of {self.vae_scale_factor}")
        timesteps, coeffs = self.ddim.chain(steps, eta)
        pixels, trajectories = [], []
        for start in range(0, len(prompts), batch_size):
            chunk = slice(start, start + batch_size)
            px, traj = self._sample_batch(
                prompts[chunk],
                seeds[chunk],
                timesteps,
                coeffs,
                guidance,
                eta,
                (height, width),
                return_trajectory,
            )
            pixels.append(px)
            trajectories.append(traj)
        trajectory = None
        if return_trajectory:
            trajectory = Trajectory(
                latents=torch.cat([t["latents"] for t in trajectories]),
                log_probs=torch.cat([t["log_probs"] for t in trajectories]),
                timesteps=timesteps.clone(),
                prompt_embeds=torch.cat([t["prompt_embeds"] for t in trajectories]),
                steps=steps,
                guidance=guidance,
                eta=eta,
            )
        return SampleOutput(torch.cat(pixels), prompts, seeds, trajectory)

    def _sample_batch(
        self,
        prompts: list[str],
        seeds: list[int],
        timesteps: torch.Tensor,
        coeffs: list[StepCoefficients],
        guidance: float,
        eta: float,
        hw: tuple[int, int],
        keep: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        from diffusers.utils.torch_utils import randn_tensor

        cond = self.encode_prompts(prompts)
        embeds = self.guidance_embeds(cond, guidance)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        shape = (
            len(prompts),
            self.unet.config.in_channels,
            hw[0] // self.vae_scale_factor,
            hw[1] // self.vae_scale_factor,
        )
        x = randn_tensor(shape, generator=generators, device=self.device, dtype=cond.dtype)
        x = x * self.ddim.init_noise_sigma
        latents, log_probs = [x.cpu()], []
        for t, c in zip(timesteps.to(self.device), coeffs, strict=True):
            out = self.guided_output(x, t, embeds, guidance)
            mean = self.ddim.step_mean(out, x, c)
            if eta > 0:
                noise = randn_tensor(
                    out.shape, generator=generators, device=self.device, dtype=out.dtype
                )
                x = mean + c.std * noise
            else:
                x = mean
            if keep:
                log_probs.append(gaussian_log_prob(x, mean, c.std).cpu())
                latents.append(x.cpu())
        pixels = self.decode(x)
        if not keep:
            return pixels, None
        traj = {
            "latents": torch.stack(latents, dim=1),
            "log_probs": torch.stack(log_probs, dim=1),
            "prompt_embeds": cond.cpu(),
        }
        return pixels, traj

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B, 3, H, W) float32 in [0, 1] on the CPU, as the pipeline does."""
        return self.decode_pixels(latents).float().cpu()

    def decode_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B, 3, H, W) in [0, 1] on the model's device, float32 (float64 for a
        float64 model); differentiable (reward backpropagation runs the VAE decoder with
        gradients)."""
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        image = (image * 0.5 + 0.5).clamp(0, 1)
        return image if image.dtype == torch.float64 else image.float()

    # --- LoRA ---------------------------------------------------------------------------
    def attach_lora(self, lora: str | Path | Any | None = None) -> None:
        """Attach a saved LoRA folder, or a new adapter (a peft LoraConfig) (default: rank 4)."""
        if isinstance(lora, (str, Path)):
            lora_lib.load_lora(self.unet, lora)
            self.lora_path = Path(lora)
        else:
            lora_lib.add_lora(self.unet, lora if lora is not None else lora_lib.lora_config())
            self.lora_path = None
        self.unet.to(self.device)

    def detach_lora(self) -> None:
        """Remove the adapters: the generator is the base model again."""
        lora_lib.remove_lora(self.unet)
        self.lora_path = None

    @contextmanager
    def lora_disabled(self) -> Iterator[None]:
        """Sample or score with the base model (e.g. DPO's reference) inside the block."""
        with lora_lib.lora_disabled(self.unet):
            yield

    def save_lora(self, out: str | Path) -> Path:
        """Save the adapters where `StableDiffusionPipeline.load_lora_weights(out)` finds them."""
        return lora_lib.save_lora(self.unet, out)

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        """The adapter weights, what a LoRA trainer optimises."""
        return [p for n, p in self.unet.named_parameters() if "lora_" in n]
