"""`FinetuneConfig`: every knob of `artalign base finetune-style`; presets micro / quick / gpu."""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.train_utils import MIXED_PRECISION, check_config


@dataclasses.dataclass
class FinetuneConfig(BaseConfig):
    """Binding a style, shown by 10-50 captioned images, to a trigger token.

    Adapters: rank, lora_alpha (LoRA and DreamBooth); init_word (Textual Inversion).
    Training: max_steps, batch_size, lr (LoRA weights), embedding_lr (the new token's row),
    warmup_steps, weight_decay, grad_clip, snr_gamma, mixed_precision, seed, max_items,
    image_size. DreamBooth: n_class_images, prior_loss_weight, class_steps, class_guidance.
    Afterwards: sample_n images with the trigger go to samples.png.
    """

    # --- adapters
    rank: int = hfield(4, "LoRA rank of the UNet's attention projections (lora, dreambooth).")
    lora_alpha: float = hfield(
        0.0, "LoRA alpha; the update is scaled by alpha / rank. 0 uses the rank (scale 1)."
    )
    init_word: str = hfield(
        "style",
        "Textual inversion: the new token's embedding starts as this word's (one token).",
    )
    # --- training
    max_steps: int = hfield(
        600, "Optimizer steps in total (a few CPU minutes on 20 images of 32 px; not tuned)."
    )
    batch_size: int = hfield(
        8, "Style images per step (DreamBooth adds as many class images); at most the data size."
    )
    lr: float = hfield(2e-3, "Peak AdamW learning rate of the LoRA weights (lora, dreambooth).")
    embedding_lr: float = hfield(
        5e-3, "Peak AdamW learning rate of the new token's embedding (textual inversion)."
    )
    warmup_steps: int = hfield(20, "Linear warmup steps from 0 to the peak learning rate.")
    weight_decay: float = hfield(1e-2, "AdamW weight decay (diffusers' example scripts' default).")
    grad_clip: float = hfield(1.0, "Clip the global gradient norm to this; 0 disables.")
    snr_gamma: float = hfield(
        0.0, "Min-SNR-gamma loss weighting (5 is the usual value); 0: plain MSE, as diffusers."
    )
    mixed_precision: str = hfield("no", "Accelerate mixed precision: no | bf16 | fp16 (GPU).")
    seed: int = hfield(0, "Seed of the adapters, data order, noise, timesteps and class images.")
    max_items: int = hfield(0, "Use only the first N style images; 0 uses all.")
    image_size: int = hfield(
        0, "Training image side; 0 uses the model's (UNet sample_size x VAE downscale)."
    )
    # --- DreamBooth prior preservation
    n_class_images: int = hfield(
        50, "Class images the base model draws from the captions without the style (cached)."
    )
    prior_loss_weight: float = hfield(1.0, "Weight of the class images' loss (DreamBooth).")
    class_steps: int = hfield(20, "DDIM steps of each class image.")
    class_guidance: float = hfield(3.0, "Classifier-free guidance of the class images.")
    # --- bookkeeping
    log_every: int = hfield(25, "Record the mean loss every N steps (progress bar, metrics).")
    sample_n: int = hfield(8, "Images with the trigger token in samples.png; 0: none.")
    sample_steps: int = hfield(20, "DDIM steps of the sample images.")
    sample_guidance: float = hfield(3.0, "Classifier-free guidance of the sample images.")

    PRESETS = {
        "micro": {
            "max_steps": 2,
            "batch_size": 2,
            "warmup_steps": 0,
            "n_class_images": 2,
            "class_steps": 2,
            "log_every": 1,
            "sample_n": 2,
            "sample_steps": 2,
        },
        "quick": {},
        "gpu": {  # SD-1.x/2.x at 512 px, as diffusers' LoRA / DreamBooth / TI scripts
            "rank": 16,
            "max_steps": 1500,
            "batch_size": 4,
            "lr": 1e-4,
            "embedding_lr": 5e-3,
            "warmup_steps": 0,
            "mixed_precision": "bf16",
            "n_class_images": 200,
            "class_steps": 50,
            "class_guidance": 7.5,
            "sample_steps": 50,
            "sample_guidance": 7.5,
        },
    }

    def validate(self) -> None:
        """Raise an ArtalignError naming the first bad value and its fix."""
        check_config(
            "FinetuneConfig",
            [
                (self.rank >= 1, "rank must be >= 1"),
                (self.lora_alpha >= 0, "lora_alpha must be >= 0 (0 uses the rank)"),
                (
                    bool(self.init_word.strip()) and " " not in self.init_word.strip(),
                    "init_word must be one word, e.g. style",
                ),
                (self.max_steps >= 1, "max_steps must be >= 1"),
                (self.batch_size >= 1, "batch_size must be >= 1"),
                (self.lr > 0, "lr must be > 0"),
                (self.embedding_lr > 0, "embedding_lr must be > 0"),
                (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
                (self.weight_decay >= 0, "weight_decay must be >= 0"),
                (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables clipping)"),
                (self.snr_gamma >= 0, "snr_gamma must be >= 0 (0 disables it)"),
                (self.mixed_precision in MIXED_PRECISION, f"mixed_precision: {MIXED_PRECISION}"),
                (self.max_items >= 0, "max_items must be >= 0"),
                (self.image_size >= 0, "image_size must be >= 0 (0: the model's size)"),
                (self.n_class_images >= 1, "n_class_images must be >= 1"),
                (self.prior_loss_weight >= 0, "prior_loss_weight must be >= 0"),
                (self.class_steps >= 1, "class_steps must be >= 1"),
                (
                    self.class_guidance >= 1 or self.class_guidance == 0,
                    "class_guidance must be >= 1 (1 or 0 turns guidance off)",
                ),
                (self.log_every >= 1, "log_every must be >= 1"),
                (self.sample_n >= 0, "sample_n must be >= 0 (0: no samples.png)"),
                (self.sample_steps >= 1, "sample_steps must be >= 1"),
                (
                    self.sample_guidance >= 1 or self.sample_guidance == 0,
                    "sample_guidance must be >= 1 (1 or 0 turns guidance off)",
                ),
            ],
        )
