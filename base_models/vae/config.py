"""`VaeConfig`: every knob of `artalign base train-vae`, with presets micro / quick / gpu."""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.train_utils import MIXED_PRECISION, check_config

RECON_LOSSES = ("log_mse", "mse", "l1")


@dataclasses.dataclass
class VaeConfig(BaseConfig):
    """Training a tiny diffusers AutoencoderKL (SD's VAE architecture) from scratch.

    Model: block_out_channels (one block per entry; each block but the last halves the side),
    layers_per_block, latent_channels, norm_num_groups, mid_attention, image_size.
    Training: max_steps, batch_size, lr, warmup_steps, weight_decay, grad_clip, recon_loss,
    kl_weight, hflip, mixed_precision, seed, max_items.
    Afterwards: scale_n images set the latent scaling factor; eval_n held-out images give PSNR.
    """

    # --- model
    image_size: int = hfield(32, "Side of the (square) training images; others are resized.")
    block_out_channels: list[int] = hfield(
        [16, 32],
        "Channels of each encoder block (the decoder mirrors them); 2 blocks = 2x downsampling "
        "(16x16 latents at 32 px: a 4x VAE rounds the corners and loses the stripes, dots and "
        "outlines that tell shapes and styles apart).",
    )
    layers_per_block: int = hfield(1, "ResNet layers per encoder block (decoder: one more).")
    latent_channels: int = hfield(4, "Channels of the latent, as SD's 4.")
    norm_num_groups: int = hfield(8, "GroupNorm groups; must divide every block's channels.")
    mid_attention: bool = hfield(True, "Self-attention in the mid block, as SD's VAE.")
    # --- training
    max_steps: int = hfield(2600, "Optimizer steps in total (quick: about 5 min on 2 CPU cores).")
    batch_size: int = hfield(
        16, "Images per step, all processes together (small batches learn faster per CPU second)."
    )
    lr: float = hfield(2e-3, "Peak AdamW learning rate (linear warmup, then cosine decay to 0).")
    warmup_steps: int = hfield(50, "Linear warmup steps from 0 to lr.")
    weight_decay: float = hfield(0.0, "AdamW weight decay.")
    grad_clip: float = hfield(1.0, "Clip the global gradient norm to this; 0 disables.")
    recon_loss: str = hfield(
        "log_mse",
        "Reconstruction loss on pixels in [-1, 1]: log_mse (mean over images of log(MSE + "
        "1e-5), i.e. maximise mean per-image PSNR; measured +2 dB over mse at equal CPU time) "
        "| mse | l1.",
    )
    salience_weight: float = hfield(
        9.0,
        "Extra loss weight, up to this much, on pixels far from the image's median colour "
        "(objects on a plain background); 0 weighs every pixel alike.",
    )
    kl_weight: float = hfield(
        1e-6,
        "Weight of the KL term (summed over latent elements, mean over images): a light pull "
        "toward N(0, 1) that keeps latents bounded; the scaling factor normalises the rest.",
    )
    hflip: float = hfield(0.5, "Probability of a horizontal flip of a training image.")
    mixed_precision: str = hfield("no", "Accelerate mixed precision: no | bf16 | fp16 (GPU).")
    seed: int = hfield(0, "Seed of initialisation, data order, flips and latent samples.")
    max_items: int = hfield(0, "Use only the first N items of the data set; 0 uses all.")
    # --- after training
    scale_n: int = hfield(
        4096, "Training images whose latent samples set scaling_factor = 1 / std (SD's recipe)."
    )
    eval_n: int = hfield(
        1000, "Held-out images (generated with eval_seed) for PSNR; 0 skips the evaluation."
    )
    eval_seed: int = hfield(4_000_037, "Seed of the held-out images (no data set default uses it).")
    # --- bookkeeping
    checkpoint_every: int = hfield(
        500, "Save a resumable checkpoint every N steps (and always at the end); 0: end only."
    )
    log_every: int = hfield(25, "Refresh the progress bar's loss every N steps.")

    PRESETS = {
        "micro": {
            "block_out_channels": [8, 8],
            "norm_num_groups": 4,
            "max_steps": 2,
            "batch_size": 4,
            "warmup_steps": 1,
            "scale_n": 8,
            "eval_n": 4,
            "checkpoint_every": 1,
            "log_every": 1,
        },
        "quick": {},
        "gpu": {
            "block_out_channels": [64, 128],
            "norm_num_groups": 32,
            "layers_per_block": 2,
            "max_steps": 20000,
            "batch_size": 256,
            "lr": 1e-3,
            "warmup_steps": 500,
            "mixed_precision": "bf16",
            "checkpoint_every": 2000,
            "salience_weight": 0.0,  # natural images: no plain background to discount
        },
    }

    @property
    def downscale(self) -> int:
        """Pixels per latent cell along a side."""
        return 2 ** (len(self.block_out_channels) - 1)

    def validate(self) -> None:
        """Raise an ArtalignError naming the first bad value and its fix."""
        ch = self.block_out_channels
        groups = self.norm_num_groups
        check_config(
            "VaeConfig",
            [
                (self.recon_loss in RECON_LOSSES, f"recon_loss must be one of {RECON_LOSSES}"),
                (self.mixed_precision in MIXED_PRECISION, f"mixed_precision: {MIXED_PRECISION}"),
                (len(ch) >= 1 and all(c > 0 for c in ch), "block_out_channels: positive ints"),
                (
                    groups >= 1 and all(c % groups == 0 for c in ch),
                    f"norm_num_groups={groups} must divide every block_out_channels {ch}",
                ),
                (
                    self.image_size % self.downscale == 0,
                    f"image_size={self.image_size} must be a multiple of {self.downscale}",
                ),
                (self.layers_per_block >= 1, "layers_per_block must be >= 1"),
                (self.latent_channels >= 1, "latent_channels must be >= 1"),
                (self.max_steps >= 1, "max_steps must be >= 1"),
                (self.batch_size >= 1, "batch_size must be >= 1"),
                (self.lr > 0, "lr must be > 0"),
                (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
                (self.weight_decay >= 0, "weight_decay must be >= 0"),
                (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables clipping)"),
                (self.kl_weight >= 0, "kl_weight must be >= 0"),
                (self.salience_weight >= 0, "salience_weight must be >= 0 (0 disables it)"),
                (0.0 <= self.hflip <= 1.0, "hflip is a probability in [0, 1]"),
                (self.max_items >= 0, "max_items must be >= 0"),
                (self.scale_n >= 2, "scale_n must be >= 2 (a std needs two samples)"),
                (self.eval_n >= 0, "eval_n must be >= 0 (0 skips the evaluation)"),
                (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
                (self.log_every >= 1, "log_every must be >= 1"),
            ],
        )
