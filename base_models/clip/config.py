"""`ClipConfig`: every knob of `artalign base train-clip`, with presets micro / quick / gpu."""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.errors import ArtalignError

LOSSES = ("clip", "siglip")
POSITIVES = ("pair", "unicl")
MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclasses.dataclass
class ClipConfig(BaseConfig):
    """Training a tiny open_clip CLIP on captioned images.

    Model: model (a registered open_clip config name), embed_dim.
    Stages (LiT): pretrain_steps, pretrain_batch_size, pretrain_lr, lock_image, positives,
    swap_negatives.
    Training: epochs / max_steps, batch_size, lr, warmup_steps, weight_decay, grad_clip, loss,
    mixed_precision, seed. Data: max_items, hflip, max_shift (caption-safe augmentation).
    Bookkeeping: checkpoint_every, log_every, eval_n.
    """

    # --- model
    model: str = hfield(
        "artalign-tiny",
        "open_clip model config name: artalign-tiny (ResNet image tower), artalign-vit-tiny "
        "(ViT, slower to learn shapes), artalign-micro (tests), or any config open_clip knows. "
        "The architecture only: weights always start random.",
    )
    embed_dim: int = hfield(
        0,
        "Width of the joint embedding; 0 keeps the config's. A changed width is saved in the "
        "model folder, so load it by folder (local-dir), not by config name.",
    )
    # --- training
    epochs: int = hfield(30, "Passes over the training set (ignored when max_steps > 0).")
    max_steps: int = hfield(0, "Optimizer steps in total; 0 means epochs x steps per epoch.")
    batch_size: int = hfield(
        256, "Global batch: pairs per step, all processes together (contrastive negatives)."
    )
    lr: float = hfield(1e-3, "Peak learning rate of AdamW, reached after warmup.")
    warmup_steps: int = hfield(100, "Linear warmup from 0 to lr; then cosine decay to 0.")
    weight_decay: float = hfield(
        0.1, "AdamW weight decay on matrices only (not on biases, norms, logit scale)."
    )
    grad_clip: float = hfield(1.0, "Clip the global gradient norm to this; 0 disables.")
    loss: str = hfield(
        "clip",
        "clip: open_clip's ClipLoss (InfoNCE, learnable temperature); siglip: open_clip's "
        "SigLipLoss (sigmoid pairs, learnable temperature and bias).",
    )
    mixed_precision: str = hfield(
        "no", "Accelerate mixed precision: no | bf16 | fp16 (fp16 needs a GPU; on CPU use no)."
    )
    seed: int = hfield(0, "Seed of initialisation, data order and augmentation.")
    # --- stages (LiT)
    pretrain_steps: int = hfield(
        0,
        "Stage 1: steps of supervised image-tower pretraining on the data's attribute records "
        "(per grid cell shape, colour, size; style; background); 0 skips it. Needs a procedural "
        "data set (`artalign data make`).",
    )
    pretrain_batch_size: int = hfield(128, "Images per step of stage 1.")
    pretrain_lr: float = hfield(2e-3, "Peak learning rate of stage 1 (AdamW, cosine decay).")
    lock_image: bool = hfield(
        False,
        "LiT: freeze the image tower in the contrastive stage and train only the text tower "
        "against its embeddings, computed once per image and flip.",
    )
    positives: str = hfield(
        "pair",
        "pair: each image's own caption is its only positive (CLIP); unicl: every caption that "
        "is true of an image is a positive (UniCL; captions of the same scene, or the same text).",
    )
    swap_negatives: bool = hfield(
        False,
        "With lock_image: each image also meets its caption with two objects' colours swapped "
        "as a hard negative (NegCLIP), for attribute binding; costs one more text pass a step.",
    )
    # --- data
    max_items: int = hfield(0, "Use only the first N items of the data set; 0 uses all.")
    hflip: float = hfield(
        0.5,
        "Probability of a horizontal flip; the caption's left/right are swapped with it, and "
        "a flip that would make a caption false is skipped (base_models.data.can_flip).",
    )
    max_shift: int = hfield(
        1, "Random translation of up to this many pixels (edge padding); 0 disables."
    )
    # --- bookkeeping
    checkpoint_every: int = hfield(
        500, "Save a resumable checkpoint every N steps (and always at the end); 0: end only."
    )
    log_every: int = hfield(25, "Refresh the progress bar's loss every N steps.")
    eval_n: int = hfield(1000, "Held-out single-object images for the final zero-shot eval.")

    PRESETS = {
        "micro": {
            "model": "artalign-micro",
            "max_steps": 2,
            "batch_size": 8,
            "warmup_steps": 1,
            "checkpoint_every": 1,
            "log_every": 1,
            "eval_n": 24,
        },
        # LiT: 3,300 supervised image-tower steps (~6.6 min on 2 CPU cores), then 8 epochs of
        # the text tower alone against the locked tower (~2 min); README "The CLIP now sees shape"
        "quick": {
            "model": "artalign-tiny",
            "pretrain_steps": 3300,
            "lock_image": True,
            "positives": "unicl",
            "epochs": 8,
        },
        "gpu": {
            "model": "artalign-tiny",
            "pretrain_steps": 10000,
            "pretrain_batch_size": 512,
            "lock_image": True,
            "positives": "unicl",
            "epochs": 30,
            "batch_size": 1024,
            "lr": 2e-3,
            "warmup_steps": 500,
            "mixed_precision": "bf16",
            "checkpoint_every": 2000,
        },
    }

    def validate(self) -> None:
        """Raise an ArtalignError naming the first bad value and its fix."""
        if self.loss not in LOSSES:
            raise ArtalignError(f"loss={self.loss!r} is unknown; choose one of {', '.join(LOSSES)}")
        if self.positives not in POSITIVES:
            raise ArtalignError(
                f"positives={self.positives!r} is unknown; choose one of {', '.join(POSITIVES)}"
            )
        if self.mixed_precision not in MIXED_PRECISION:
            raise ArtalignError(
                f"mixed_precision={self.mixed_precision!r} is unknown; choose one of "
                f"{', '.join(MIXED_PRECISION)}"
            )
        checks = [
            (self.batch_size >= 2, "batch_size must be >= 2 (contrastive learning needs pairs)"),
            (self.epochs >= 1 or self.max_steps >= 1, "set epochs >= 1 or max_steps >= 1"),
            (self.max_steps >= 0, "max_steps must be >= 0"),
            (self.lr > 0, "lr must be > 0"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables clipping)"),
            (0.0 <= self.hflip <= 1.0, "hflip is a probability in [0, 1]"),
            (self.max_shift >= 0, "max_shift must be >= 0"),
            (self.embed_dim >= 0, "embed_dim must be >= 0 (0 keeps the config's)"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.eval_n >= 0, "eval_n must be >= 0 (0 skips the final evaluation)"),
            (self.max_items >= 0, "max_items must be >= 0"),
            (self.pretrain_steps >= 0, "pretrain_steps must be >= 0 (0 skips stage 1)"),
            (self.pretrain_batch_size >= 1, "pretrain_batch_size must be >= 1"),
            (self.pretrain_lr > 0, "pretrain_lr must be > 0"),
            (self.lock_image or not self.swap_negatives, "swap_negatives needs lock_image=true"),
        ]
        for ok, message in checks:
            if not ok:
                raise ArtalignError(f"bad ClipConfig: {message}")
