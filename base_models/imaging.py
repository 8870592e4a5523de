"""Image helpers shared by every stage: square crops for training, tensors to PIL images,
contact-sheet grids."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

if TYPE_CHECKING:
    import torch


def square_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size` (bicubic) and centre-crop, as open_clip's and SD's
    training preprocess do; (size, size, C) uint8."""
    if image.size != (size, size):
        w, h = image.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """PIL images of (B, 3, H, W) floats in [0, 1], rounded as diffusers' image processor does
    (x·255, round, uint8)."""
    arrays = pixels.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255
    return [Image.fromarray(a) for a in arrays.round().astype("uint8")]


def make_grid(
    images: Sequence[Image.Image], ncols: int = 8, scale: int = 1, pad: int = 2
) -> Image.Image:
    """Tile images (all the size of the first) into one RGB grid, each upscaled by `scale`.

    Nearest-neighbour upscaling keeps 32x32 pixels crisp, so people see what models see.
    """
    if not images:
        raise ValueError("make_grid needs at least one image")
    w, h = images[0].size
    w, h = w * scale, h * scale
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    grid = Image.new("RGB", (ncols * (w + pad) + pad, nrows * (h + pad) + pad), (255, 255, 255))
    for i, im in enumerate(images):
        tile = im.convert("RGB").resize((w, h), Image.Resampling.NEAREST)
        grid.paste(tile, (pad + (i % ncols) * (w + pad), pad + (i // ncols) * (h + pad)))
    return grid


# The text chunks of a generated PNG (artalign generate, label batches), in this order.
GENERATED_PNG_KEYS = ("prompt", "rewritten", "seed", "model", "lora", "settings")


def png_info(meta: dict[str, Any], keys: Sequence[str] | None = None) -> PngInfo:
    """PNG text chunks of `meta` (only `keys`, in that order, where given): dicts as sorted JSON,
    None as "", anything else as str — so an image carries the settings that made it."""
    info = PngInfo()
    for key in keys if keys is not None else list(meta):
        if key not in meta:
            continue
        value = meta[key]
        text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        info.add_text(key, "" if text is None else str(text))
    return info
