"""Images held in memory for the VAE and the UNet: decoded once into one uint8 tensor.

A tiny autoencoder takes well under a millisecond per 32px image on a CPU, so decoding PNGs
per batch would cost more than the model. Both trainers read any supported data format through
`base_models.data.load_records` (opt-out lists honoured) and keep (N, 3, S, S) uint8 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from base_models.data import load_records
from base_models.errors import ArtalignError
from base_models.imaging import square_crop
from base_models.progress import cleared_on_error


@dataclass
class ImageArray:
    """A data set in memory: pixels (N, 3, S, S) uint8, captions, ids and metadata in order."""

    pixels: torch.Tensor
    texts: list[str]
    ids: list[str]
    attrs: list[dict] = field(default_factory=list)  # each item's metadata (e.g. "count")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        return int(self.pixels.shape[-1])


def load_images(
    source: str | Path, size: int, max_items: int = 0, require_text: bool = True
) -> ImageArray:
    """Decode the data set at `source` (any format load_records reads) at `size` x `size`."""
    if not Path(source).exists() and not any(c in str(source) for c in "*?{"):
        raise ArtalignError(f"data set {source} does not exist; pass a data folder or file")
    records = load_records(source, require_text=require_text)
    if max_items:
        records = records[:max_items]
    pixels = np.empty((len(records), size, size, 3), dtype=np.uint8)
    bar = tqdm(total=len(records), desc="decode", unit="img", mininterval=2.0)
    with cleared_on_error(bar):
        for i, rec in enumerate(records):
            pixels[i] = square_crop(rec.load_image(), size)
            bar.update()
    return ImageArray(
        pixels=torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
        texts=[r.text for r in records],
        ids=[r.id for r in records],
        attrs=[r.attrs for r in records],
    )


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1], the range SD's VAE reads and writes."""
    return pixels.float().div(127.5).sub(1.0)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 in [0, 255] (clamped, rounded)."""
    return x.float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
