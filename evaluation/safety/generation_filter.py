"""The safety filter `artalign generate --safety-filter DIR` loads, through an entry point.

base_models (where `generate` lives) imports nothing above it, so the command finds this loader
through the `artalign.image_filters` entry-point group, as the evaluation plug-ins and the
prompt rewriter are found. DIR is a concept checker made by `artalign eval calibrate-safety`;
the CLIP it was calibrated with (recorded in it) embeds the images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from evaluation.safety.checker import ConceptChecker, filter_unsafe

ImageFilter = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def load_filter(path: str | Path) -> ImageFilter:
    """A filter: (B, 3, H, W) pixels in [0, 1] -> (pixels with flagged images black, flags (B,))."""
    checker = ConceptChecker.load(path)

    def blackout(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return filter_unsafe(pixels, checker, replace="black")

    return blackout
