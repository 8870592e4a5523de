"""What the oracle reads from an image, as an attribute record like the data set's ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from base_models.errors import ArtalignError
from base_models.oracle.model import AttributeOracle
from base_models.world.attributes import UNSAFE_SHAPE, position_name

PRESENCE_THRESHOLD = 0.5
# oracle head -> its vocabulary key
_HEADS = {
    "shape": "shapes",
    "colour": "colours",
    "size": "sizes",
    "background": "backgrounds",
    "style": "styles",
}


@dataclass
class OracleReading:
    """The oracle's reading of one image.

    `objects`: one dict per occupied cell, in reading order, with shape, colour, size, row, col,
    position, `confidence` (the presence probability) and `probs` (the oracle's distribution over
    each of shape, colour and size: {"shape": {name: p}, ...}). `count`, `background`, `style` as
    in metadata.jsonl, each the most likely value. `presence` holds all nine cells' presence
    probabilities (reading order); `probs` the distributions over background and style.
    """

    objects: list[dict[str, Any]]
    background: str
    style: str
    presence: list[float] = field(default_factory=list)
    probs: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def unsafe(self) -> bool:
        return any(o["shape"] == UNSAFE_SHAPE for o in self.objects)

    def to_record(self, probabilities: bool = False) -> dict[str, Any]:
        """The reading laid out as a metadata.jsonl record (objects, count, background, ...).

        With `probabilities`, the record also carries what the oracle is unsure of: each object's
        `confidence` and `probs`, and the record's `presence` and `probs` (what
        `base_models.oracle.expected` reads; plain records mean certainty).
        """
        keys = ("shape", "colour", "size", "row", "col", "position")
        if probabilities:
            keys += ("confidence", "probs")
        objects = [{k: o[k] for k in keys if k in o} for o in self.objects]
        record = {
            "objects": objects,
            "count": self.count,
            "background": self.background,
            "style": self.style,
            "unsafe": self.unsafe,
        }
        if probabilities:
            record["presence"] = list(self.presence)
            record["probs"] = {k: dict(v) for k, v in self.probs.items()}
        return record


def images_to_tensor(images: Sequence[Image.Image] | torch.Tensor, size: int) -> torch.Tensor:
    """PIL images, or a (B, 3, H, W) tensor (floats in [0, 1] or uint8), as (B, 3, size, size).

    Images of another side are resized with antialiasing: the oracle reads at its training size.
    """
    if isinstance(images, torch.Tensor):
        x = images
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ArtalignError(f"images tensor must be (B, 3, H, W); got {tuple(images.shape)}")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    else:
        arrays = []
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                raise ArtalignError(f"image {i} is a {type(im).__name__}, not a PIL image")
            if im.size != (size, size):
                im = im.convert("RGB").resize((size, size), Image.Resampling.BOX)
            arrays.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        if not arrays:
            return torch.zeros(0, 3, size, size)
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).contiguous()  # (B, 3, size, size)


def _table(vocab: dict[str, list[str]], head: str, row: list[float]) -> dict[str, float]:
    return dict(zip(vocab[_HEADS[head]], row, strict=True))


def _top(dist: dict[str, float]) -> str:
    return max(dist, key=dist.__getitem__)


def decode(
    logits: dict[str, torch.Tensor],
    vocab: dict[str, list[str]],
    grid: int,
    threshold: float = PRESENCE_THRESHOLD,
    temperatures: dict[str, float] | None = None,
) -> list[OracleReading]:
    """Turn a batch of oracle logits into readings: cells with presence > threshold are objects.

    Each value read is the most likely one; the softmax distributions (of the logits divided by
    the head's temperature, 1 if not given) come along in `probs`.
    """
    presence = torch.sigmoid(logits["presence"].float()).cpu()  # (B, cells)
    temps = temperatures or {}
    # head -> nested lists (B, cells, V) or (B, V)
    probs = {k: (logits[k].float() / temps.get(k, 1.0)).softmax(-1).cpu().tolist() for k in _HEADS}
    readings = []
    for b in range(presence.shape[0]):
        objects = []
        for cell in range(presence.shape[1]):
            p = float(presence[b, cell])
            if p <= threshold:
                continue
            row, col = divmod(cell, grid)
            dists = {k: _table(vocab, k, probs[k][b][cell]) for k in ("shape", "colour", "size")}
            objects.append(
                {
                    **{k: _top(d) for k, d in dists.items()},
                    "row": row,
                    "col": col,
                    "position": position_name(row, col),
                    "confidence": p,
                    "probs": dists,
                }
            )
        image_probs = {k: _table(vocab, k, probs[k][b]) for k in ("background", "style")}
        readings.append(
            OracleReading(
                objects=objects,
                background=_top(image_probs["background"]),
                style=_top(image_probs["style"]),
                presence=[float(v) for v in presence[b]],
                probs=image_probs,
            )
        )
    return readings


@torch.no_grad()
def read_images(
    oracle: AttributeOracle,
    images: Sequence[Image.Image] | torch.Tensor,
    batch_size: int = 256,
    threshold: float = PRESENCE_THRESHOLD,
) -> list[OracleReading]:
    """Read every image with the oracle (in eval mode, on the oracle's device), in batches.

    `images`: PIL images, or a (B, 3, H, W) or (3, H, W) tensor of floats in [0, 1] or uint8;
    any side is resized to the oracle's. One OracleReading per image, in order.
    """
    was_training = oracle.training
    oracle.eval()
    device = next(oracle.parameters()).device
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images.unsqueeze(0)  # one (3, H, W) image
    readings: list[OracleReading] = []
    n = len(images)
    try:
        for start in range(0, n, batch_size):
            chunk = images[start : start + batch_size]
            x = images_to_tensor(chunk, oracle.size).to(device)  # (b, 3, S, S)
            temps = getattr(oracle, "temperatures", None)
            readings += decode(oracle(x), oracle.vocab, oracle.grid, threshold, temps)
    finally:
        oracle.train(was_training)
    return readings
