"""Preprocessing and caption-safe augmentation for captioned images.

An augmentation must never make a caption false. A horizontal flip moves "the red circle on the
left" to the right, so a flip is applied only when the caption can follow it: when the record's
attributes say where objects are (the procedural world's records), the image, the attributes and
the words left/right in the caption are mirrored together; a free-form caption that mentions left
or right is not flipped at all, because there "right" may mean "correct" and "left" may mean
"went away". (Every shape in the procedural world is mirror-symmetric, so a flip changes only
positions.) Colour jitter is limited to brightness and contrast: hue and saturation would change
the colour names the captions state.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from base_models.errors import ArtalignError
from base_models.world.attributes import GRID

# "left"/"right" as words, also in "leftmost", "rightward(s)", "left-hand"; never in "upright",
# "bright", "copyright" or "leftover".
_LEFT_RIGHT = re.compile(r"(?<![a-z])(left|right)(?=(?:most|wards?)?(?![a-z]))", re.IGNORECASE)
_SWAP = {"left": "right", "right": "left"}


def mentions_left_right(text: str) -> bool:
    """True when the text uses the word left or right (in any case)."""
    return bool(_LEFT_RIGHT.search(text))


def _swap_word(match: re.Match[str]) -> str:
    word = match.group(1)
    new = _SWAP[word.lower()]
    if word.isupper():
        return new.upper()
    if word[0].isupper():
        return new.capitalize()
    return new


def mirror_text(text: str) -> str:
    """Swap the words left and right, keeping their case: the caption of a mirrored image."""
    return _LEFT_RIGHT.sub(_swap_word, text)


def has_spatial_attrs(attrs: dict[str, Any] | None) -> bool:
    """True when the attributes say where things are (a `col` or `position`, at any depth)."""

    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            if "col" in value or "position" in value:
                return True
            return any(walk(v) for v in value.values())
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return False

    return walk(attrs or {})


def mirror_attrs(attrs: dict[str, Any], grid: int = GRID) -> dict[str, Any]:
    """A mirrored copy of the attributes: every `col` becomes grid-1-col and every `position`
    name swaps left and right ("top left" -> "top right"; "center" stays)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            col = out.get("col")
            if isinstance(col, int) and not isinstance(col, bool) and 0 <= col < grid:
                out["col"] = grid - 1 - col
            if isinstance(out.get("position"), str):
                out["position"] = mirror_text(out["position"])
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return copy.copy(value)

    return walk(attrs)


def can_flip(text: str, attrs: dict[str, Any] | None) -> bool:
    """Whether a horizontal flip keeps the caption true (after mirroring, where that is known)."""
    return has_spatial_attrs(attrs) or not mentions_left_right(text)


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if isinstance(generator, int):
        return torch.Generator().manual_seed(generator)
    return generator


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class ImageTextTransform:
    """Resize (shorter side) + crop + caption-safe flip + brightness/contrast + normalise.

    Called as `transform(image, text, attrs, generator)`; returns `(pixel_values, text, attrs)`,
    pixel_values a float tensor (C, size, size). Randomness comes only from `generator` (a
    torch.Generator or an int seed), else from the generator made from `seed` here, else from the
    global torch RNG, so a fixed seed gives the same augmentations every time.

    Args:
        size: output side; None keeps the image as it is (no resize, no crop).
        crop: "center" or "random" (random only moves along the longer side of the resized image).
        hflip: probability of a horizontal flip, applied only when `can_flip` allows it.
        brightness, contrast: factors drawn uniformly from [1 - x, 1 + x]; 0 disables them.
        mean, std: per-channel normalisation; the defaults map [0, 1] to [-1, 1], as VAEs expect.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        crop: str = "center",
        hflip: float = 0.0,
        brightness: float = 0.0,
        contrast: float = 0.0,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        interpolation: InterpolationMode = InterpolationMode.BICUBIC,
        seed: int | None = None,
    ) -> None:
        if size is not None and size <= 0:
            raise ArtalignError(f"image size must be positive, got {size}")
        if crop not in ("center", "random"):
            raise ArtalignError(f"crop must be 'center' or 'random', got {crop!r}")
        if not 0.0 <= hflip <= 1.0:
            raise ArtalignError(f"hflip is a probability in [0, 1], got {hflip}")
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if not 0.0 <= value < 1.0:
                raise ArtalignError(f"{name} jitter must be in [0, 1), got {value}")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ArtalignError(
                f"mean {list(mean)} and std {list(std)} need equal lengths, std > 0"
            )
        self.size = size
        self.crop = crop
        self.hflip = hflip
        self.brightness = brightness
        self.contrast = contrast
        self.mean = list(mean)
        self.std = list(std)
        self.interpolation = interpolation
        self._own_generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(
        self,
        image: Image.Image,
        text: str = "",
        attrs: dict[str, Any] | None = None,
        generator: torch.Generator | int | None = None,
    ) -> tuple[torch.Tensor, str, dict[str, Any]]:
        gen = _generator(generator) or self._own_generator
        attrs = {} if attrs is None else attrs
        img = F.to_image(image.convert("RGB")).as_subclass(torch.Tensor)  # (3, H, W) uint8
        if self.size is not None:
            img = self._resize_crop(img, gen)
        if self.hflip > 0:
            # Draw even when the flip is vetoed, so one item's caption never shifts the
            # random stream of the items after it.
            flip = _uniform(0.0, 1.0, gen) < self.hflip
            if flip and can_flip(text, attrs):
                img = F.horizontal_flip(img)
                if has_spatial_attrs(attrs):
                    text, attrs = mirror_text(text), mirror_attrs(attrs)
        img = F.to_dtype(img, torch.float32, scale=True)
        if self.brightness > 0:
            img = F.adjust_brightness(img, _uniform(1 - self.brightness, 1 + self.brightness, gen))
        if self.contrast > 0:
            img = F.adjust_contrast(img, _uniform(1 - self.contrast, 1 + self.contrast, gen))
        img = F.normalize(img, self.mean, self.std)
        return img, text, attrs

    def _resize_crop(self, img: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        size = self.size
        assert size is not None
        h, w = img.shape[-2:]
        if min(h, w) != size:
            img = F.resize(img, [size], interpolation=self.interpolation, antialias=True)
            h, w = img.shape[-2:]
        if (h, w) == (size, size):
            return img
        if self.crop == "center":
            return F.center_crop(img, [size, size])
        top = int(torch.randint(0, h - size + 1, (), generator=gen))
        left = int(torch.randint(0, w - size + 1, (), generator=gen))
        return F.crop(img, top, left, size, size)


def eval_transform(size: int | None = None) -> ImageTextTransform:
    """Deterministic preprocessing for evaluation and sampling: resize, center crop, [-1, 1]."""
    return ImageTextTransform(size)


def train_transform(size: int | None = None, seed: int | None = None) -> ImageTextTransform:
    """Training preprocessing: random crop, caption-safe flips, mild brightness/contrast."""
    return ImageTextTransform(
        size, crop="random", hflip=0.5, brightness=0.1, contrast=0.1, seed=seed
    )
