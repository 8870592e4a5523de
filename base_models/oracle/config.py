"""Config of the attribute oracle's training: data stream, network, optimiser, augmentation."""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.errors import ArtalignError


@dataclasses.dataclass
class OracleConfig(BaseConfig):
    """Training the attribute oracle, an evaluation instrument held apart from the models it judges.

    Data: n_train / n_val fresh procedural images of the "all" split, drawn in memory from a seed
    stream of their own (never the defaults of `artalign data make`), with no stereotypes so the
    instrument is unbiased, and a high unsafe_share so the warning sign is learned.
    Network: channels, hidden. Training: epochs, batch_size, lr, weight_decay, warmup, label
    smoothing, mixed_precision. Augmentation: blur, noise, brightness/contrast, translation, all
    small enough that no colour name, size or cell changes.
    """

    # data
    n_train: int = hfield(30000, "Training images, rendered in memory once per run.")
    n_val: int = hfield(2000, "Validation images (same stream, indices after the training ones).")
    seed: int = hfield(1_000_003, "Seed of the oracle's own image stream and of training.")
    size: int = hfield(32, "Image side in pixels the oracle reads (inputs are resized to it).")
    unsafe_share: float = hfield(0.15, "Share of training images with a warning sign.")
    supersample: int = hfield(4, "Rendering supersampling factor (as in `data make`).")
    render_workers: int = hfield(2, "Processes that render the training images (1 = in-process).")
    # network
    channels: list[int] = hfield([32, 64, 96], "Backbone channels at strides 1, 2 and 4.")
    hidden: int = hfield(192, "Width of the per-cell and per-image heads.")
    # training
    epochs: int = hfield(6, "Passes over the training images.")
    batch_size: int = hfield(128, "Images per optimiser step (per process).")
    lr: float = hfield(3e-3, "Peak AdamW learning rate (linear warm-up, cosine decay to 2%).")
    weight_decay: float = hfield(1e-4, "AdamW weight decay.")
    warmup_steps: int = hfield(100, "Linear warm-up steps.")
    label_smoothing: float = hfield(0.02, "Label smoothing of the classification heads.")
    mixed_precision: str = hfield("no", "Accelerate mixed precision: no | bf16 | fp16.")
    # augmentation (applied per image, on the fly)
    aug_prob: float = hfield(0.8, "Probability that an image is augmented at all.")
    blur_sigma: float = hfield(1.0, "Largest Gaussian blur sigma, in pixels.")
    noise_std: float = hfield(0.04, "Largest std of additive Gaussian pixel noise (0-1 scale).")
    brightness: float = hfield(0.08, "Largest brightness change, as a fraction (x 1 +- b).")
    contrast: float = hfield(0.08, "Largest contrast change, as a fraction.")
    shift_px: int = hfield(1, "Largest translation in whole pixels (within the cell jitter).")
    # bookkeeping
    log_every: int = hfield(50, "Steps between progress-bar loss updates.")

    PRESETS = {
        "micro": {
            "n_train": 96,
            "n_val": 32,
            "channels": [8, 8, 16],
            "hidden": 16,
            "epochs": 2,
            "batch_size": 32,
            "warmup_steps": 1,
            "render_workers": 1,
        },
        "quick": {"n_train": 30000, "epochs": 6},
        "gpu": {
            "n_train": 200000,
            "n_val": 5000,
            "epochs": 12,
            "batch_size": 256,
            "channels": [48, 96, 160],
            "hidden": 256,
            "mixed_precision": "bf16",
            "render_workers": 8,
        },
    }

    def validate(self) -> None:
        """Raise an ArtalignError naming the first key with an impossible value."""
        checks = [
            (self.n_train >= 1, "n_train must be >= 1"),
            (self.n_val >= 1, "n_val must be >= 1"),
            (self.size >= 12, "size must be >= 12 pixels"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (len(self.channels) == 3, "channels must list 3 widths, e.g. 32,64,96"),
            (0.0 <= self.unsafe_share <= 1.0, "unsafe_share must be in [0, 1]"),
            (0.0 <= self.aug_prob <= 1.0, "aug_prob must be in [0, 1]"),
            (self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision: no | bf16 | fp16"),
        ]
        for ok, message in checks:
            if not ok:
                raise ArtalignError(f"oracle config: {message}")
