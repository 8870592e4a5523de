"""Images for the HTML report: one embedded PNG strip per prompt and model, as a data URI.

Small generations (32 px) are upscaled by a whole factor with nearest-neighbour so people see the
pixels models see; large ones (SD's 512 px) are shrunk to thumbnails so the report stays small.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from base_models.imaging import make_grid

TILE = 96  # target side of one image in the report, in pixels


def thumbnail(image: Image.Image, tile: int = TILE) -> Image.Image:
    """`image` at about `tile` px: whole-factor nearest upscale, or a Lanczos thumbnail."""
    image = image.convert("RGB")
    side = max(image.size)
    if side * 2 <= tile:
        k = tile // side
        return image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)
    if side > tile:
        scale = tile / side
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.Resampling.LANCZOS)
    return image


def data_uri(image: Image.Image) -> str:
    """A PNG data URI of `image` (what an <img src> embeds)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def strip_uri(files: Sequence[Path], tile: int = TILE) -> str | None:
    """The images of `files` side by side as one PNG data URI (None when none can be read)."""
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                images.append(thumbnail(im, tile))
        except (OSError, ValueError):
            continue
    if not images:
        return None
    return data_uri(make_grid(images, ncols=len(images), scale=1, pad=2))
