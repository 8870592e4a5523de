"""The CLIP image tower as a feature extractor for Fréchet distances (torchmetrics' FID/KID).

torchmetrics' FrechetInceptionDistance takes any nn.Module as `feature`; this one maps float
images in [0, 1] of any size to CLIP image embeddings, resizing (bicubic, antialiased) and
normalising exactly as open_clip's preprocess does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from base_models.clip.model_io import load_clip


class ClipImageFeatures(nn.Module):
    """(B, 3, H, W) floats in [0, 1] -> (B, D) CLIP image embeddings (not normalised)."""

    def __init__(self, clip: nn.Module, size: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.num_features = int(clip.text_projection.shape[-1])

    @classmethod
    def from_folder(cls, path: str | Path) -> ClipImageFeatures:
        """The image tower of a CLIP folder written by `base train-clip`."""
        model, _, _ = load_clip(str(path))
        pp = model.visual.preprocess_cfg  # open_clip keeps size / mean / std on the tower
        size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
        return cls(model, int(size), list(pp["mean"]), list(pp["std"]))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.max() > 1.5:  # uint8 range (torchmetrics probes with uint8 images)
            x = x / 255.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True)
            x = x.clamp(0, 1)
        return self.clip.encode_image((x - self.mean) / self.std).float()
