"""`RewardConfig`: everything `artalign reward train` can set, with presets micro / quick / gpu.

Fields, by group:
- model: backbone, backbone_kind, pretrained, head, mode, mlp_hidden, dropout, lora_*;
- data: both_bad, include_gold, exclude_flagged, flag_kappa, rater_weights, val_frac, test_frac,
  train_fraction, seed;
- training: loss, epochs, batch_size, lr, backbone_lr, weight_decay, patience,
  mixed_precision, cache_features, eval_batch_size.
"""

from __future__ import annotations

import dataclasses

from base_models.config import BaseConfig, hfield
from base_models.errors import ArtalignError
from base_models.train_utils import MIXED_PRECISION
from rlhf.reward.backbones import BACKBONE_KINDS
from rlhf.reward.data import BOTH_BAD
from rlhf.reward.model import HEADS, MODES

LOSSES = ("bt", "pl")


@dataclasses.dataclass
class RewardConfig(BaseConfig):
    """Reward-model training: backbone + head, data handling, optimisation."""

    # model
    backbone: str = hfield("runs/demo/clip", "CLIP folder (or open_clip config name).")
    backbone_kind: str = hfield("artalign", "artalign | open_clip | transformers.")
    pretrained: str | None = hfield(
        None, "open_clip only: local .safetensors weights for a config-name backbone."
    )
    head: str = hfield(
        "pickscore", "pickscore (scaled cosine), mlp (joint-feature MLP) or hybrid (both summed)."
    )
    mode: str = hfield("frozen", "frozen (head only), lora (adapters + head) or full.")
    mlp_hidden: list[int] = hfield([256, 64], "Hidden widths of the mlp head.")
    dropout: float = hfield(0.1, "Dropout in the mlp head.")
    lora_r: int = hfield(8, "LoRA rank (mode=lora).")
    lora_alpha: float = hfield(16.0, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = hfield(0.0, "Dropout on the LoRA path.")
    # data
    both_bad: str = hfield("drop", "What a 'both bad' answer becomes: drop or tie.")
    include_gold: bool = hfield(False, "Train on gold tasks' judgments too.")
    exclude_flagged: bool = hfield(True, "Leave out raters who agree with nobody (kappa flags).")
    flag_kappa: float = hfield(
        0.2, "A rater whose kappa with every partner is below this is flagged (exclude_flagged)."
    )
    rater_weights: bool = hfield(False, "Weight raters by their mean kappa with the others.")
    val_frac: float = hfield(0.1, "Share of prompts held out for validation (early stopping).")
    test_frac: float = hfield(0.2, "Share of prompts held out for testing (`reward eval`).")
    train_fraction: float = hfield(1.0, "Share of the training judgments used (learning curves).")
    seed: int = hfield(0, "Seed of the split, the sampling and the initialisation.")
    # training
    loss: str = hfield(
        "bt",
        "bt: Bradley-Terry on pairs and rankings' implied pairs; pl: "
        "Plackett-Luce on rankings (pairs still BT).",
    )
    epochs: int = hfield(20, "Passes over the training judgments.")
    batch_size: int = hfield(64, "Judgments per step.")
    lr: float = hfield(1e-3, "AdamW learning rate of the head.")
    backbone_lr: float = hfield(1e-4, "AdamW learning rate of the backbone (lora / full).")
    weight_decay: float = hfield(1e-4, "AdamW weight decay (matrices only).")
    patience: int = hfield(5, "Stop after this many epochs without a better val accuracy (0: off).")
    mixed_precision: str = hfield("no", "no | bf16 | fp16 (fp16 needs a GPU).")
    calibrate_scale: bool = hfield(
        True, "pickscore / hybrid: fit the logit scale to the training pairs before training."
    )
    cache_features: bool = hfield(True, "frozen mode: embed each image and prompt once.")
    eval_batch_size: int = hfield(256, "Images per batch when embedding or scoring.")

    PRESETS = {
        "micro": {
            "epochs": 2,
            "batch_size": 8,
            "mlp_hidden": [16],
            "patience": 0,
            "eval_batch_size": 32,
        },
        "quick": {"epochs": 30, "batch_size": 64, "lr": 2e-3, "patience": 6},
        "gpu": {
            "mode": "lora",
            "epochs": 10,
            "batch_size": 128,
            "lr": 1e-3,
            "backbone_lr": 1e-4,
            "mixed_precision": "bf16",
            "patience": 3,
        },
    }

    def validate(self) -> None:
        """Raise an ArtalignError naming the first bad value and its fix."""
        choices = [
            ("backbone_kind", BACKBONE_KINDS),
            ("head", HEADS),
            ("mode", MODES),
            ("both_bad", BOTH_BAD),
            ("loss", LOSSES),
            ("mixed_precision", MIXED_PRECISION),
        ]
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ArtalignError(
                    f"{name}={getattr(self, name)!r} is unknown; choose one of {', '.join(allowed)}"
                )
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1: {self.eval_batch_size}"),
            (self.lr > 0 and self.backbone_lr > 0, "lr and backbone_lr must be > 0"),
            (
                0 < self.train_fraction <= 1,
                f"train_fraction must be in (0, 1], got {self.train_fraction}",
            ),
            (self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.patience >= 0, f"patience must be >= 0, got {self.patience}"),
            (all(h >= 1 for h in self.mlp_hidden), "mlp_hidden widths must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ArtalignError(f"bad reward config: {message}")
