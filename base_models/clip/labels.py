"""Attribute targets of the procedural world, for pretraining a CLIP image tower with supervision.

The analogue of the ImageNet labels that LiT (Zhai et al. 2022, arXiv 2111.07991) pretrains its
locked image towers on: every training image's own ground truth, read from the data set's
attribute record (the training split only; the oracle is never read). The targets name each grid
cell's content, so the tower learns which colour goes with which shape (binding), not only which
colours and shapes are present:

    cell_shape  (N, 9)  0 = empty, else 1 + index into ALL_SHAPES
    cell_colour (N, 9)  0 = empty, else 1 + index into COLOUR_NAMES
    cell_size   (N, 9)  0 = empty, else 1 + index into SIZE_NAMES
    style       (N,)    index into STYLES
    background  (N,)    index into BACKGROUND_NAMES

A horizontal flip maps column c to GRID-1-c (`flip_cells`), so the targets follow the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.world.attributes import (
    ALL_SHAPES,
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    GRID,
    SIZE_NAMES,
    STYLES,
)

CELLS = GRID * GRID
CELL_HEADS: dict[str, tuple[str, ...]] = {
    "cell_shape": ALL_SHAPES,
    "cell_colour": COLOUR_NAMES,
    "cell_size": SIZE_NAMES,
}
SCENE_HEADS: dict[str, tuple[str, ...]] = {"style": STYLES, "background": BACKGROUND_NAMES}
# Multi-label heads: which (colour, shape) and (size, shape) pairs the image shows, wherever they
# are. They carry binding without position, which a pooled CNN feature holds more easily.
PAIR_HEADS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "colour_shape": (COLOUR_NAMES, ALL_SHAPES),
    "size_shape": (SIZE_NAMES, ALL_SHAPES),
}
FLIP_CELLS = torch.tensor([r * GRID + (GRID - 1 - c) for r in range(GRID) for c in range(GRID)])


def head_sizes() -> dict[str, int]:
    """Logits per head: cell heads have CELLS x (1 + classes) (class 0 = empty cell)."""
    sizes = {name: CELLS * (1 + len(v)) for name, v in CELL_HEADS.items()}
    sizes.update({name: len(v) for name, v in SCENE_HEADS.items()})
    sizes.update({name: len(a) * len(b) for name, (a, b) in PAIR_HEADS.items()})
    return sizes


def _index(values: tuple[str, ...], value: Any, what: str, where: int) -> int:
    if value not in values:
        raise ArtalignError(
            f"item {where}: {what} {value!r} is not one of the world's {', '.join(values)}"
        )
    return values.index(value)


def attribute_targets(attrs: Sequence[dict[str, Any] | None]) -> dict[str, torch.Tensor]:
    """Targets of every item from its attribute record (see the module docstring)."""
    n = len(attrs)
    out = {name: torch.zeros(n, CELLS, dtype=torch.long) for name in CELL_HEADS}
    out.update({name: torch.zeros(n, dtype=torch.long) for name in SCENE_HEADS})
    out.update({name: torch.zeros(n, len(a) * len(b)) for name, (a, b) in PAIR_HEADS.items()})
    for i, rec in enumerate(attrs):
        if not rec or not isinstance(rec.get("objects"), list):
            raise ArtalignError(
                f"item {i} has no attribute record (objects, style, background): supervised "
                "image-tower pretraining needs a procedural data set (`artalign data make`); "
                "for other data pass pretrain_steps=0"
            )
        for obj in rec["objects"]:
            cell = int(obj["row"]) * GRID + int(obj["col"])
            out["cell_shape"][i, cell] = 1 + _index(ALL_SHAPES, obj["shape"], "shape", i)
            out["cell_colour"][i, cell] = 1 + _index(COLOUR_NAMES, obj["colour"], "colour", i)
            out["cell_size"][i, cell] = 1 + _index(SIZE_NAMES, obj["size"], "size", i)
            shape = ALL_SHAPES.index(obj["shape"])
            out["colour_shape"][i, COLOUR_NAMES.index(obj["colour"]) * len(ALL_SHAPES) + shape] = 1
            out["size_shape"][i, SIZE_NAMES.index(obj["size"]) * len(ALL_SHAPES) + shape] = 1
        out["style"][i] = _index(STYLES, rec.get("style"), "style", i)
        out["background"][i] = _index(BACKGROUND_NAMES, rec.get("background"), "background", i)
    return out


def flip_cells(targets: dict[str, torch.Tensor], flip: torch.Tensor) -> dict[str, torch.Tensor]:
    """Targets of horizontally flipped images: cell columns mirrored where `flip` (B,) is True."""
    out = dict(targets)
    for name in CELL_HEADS:
        t = targets[name]
        out[name] = torch.where(flip.view(-1, 1), t[:, FLIP_CELLS], t)
    return out


class AttributeHeads(torch.nn.Module):
    """Linear heads over the (L2-normalised) image embedding, one per attribute target.

    Reading the normalised embedding matters: CLIP compares embeddings by cosine, so what the
    heads make linearly separable is what the contrastive stage can use.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.sizes = head_sizes()
        self.linear = torch.nn.Linear(embed_dim, sum(self.sizes.values()))
        # unit vectors have entries ~ 1/sqrt(D): rescale them to unit variance, or the heads'
        # weights must grow for hundreds of steps before any logit moves off the prior
        self.scale = float(embed_dim) ** 0.5

    def loss(self, features: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy over the heads (and over cells for the cell heads)."""
        logits = self.linear(self.scale * torch.nn.functional.normalize(features, dim=-1))
        parts = logits.split(list(self.sizes.values()), dim=1)
        losses = []
        for (name, _), part in zip(self.sizes.items(), parts, strict=True):
            target = targets[name]
            if name in PAIR_HEADS:
                bce = torch.nn.functional.binary_cross_entropy_with_logits(part, target)
                losses.append(bce * part.shape[1] / 4)  # about one CE's worth per head
                continue
            if name in CELL_HEADS:
                part = part.reshape(len(part), CELLS, -1).flatten(0, 1)
                target = target.flatten()
            losses.append(torch.nn.functional.cross_entropy(part, target))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def accuracy(
        self, features: torch.Tensor, targets: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """Per head: share of correct predictions (cell heads: the content of occupied cells;
        pair heads: recall of the shown pairs among as many top-scored ones)."""
        logits = self.linear(self.scale * torch.nn.functional.normalize(features, dim=-1))
        parts = logits.split(list(self.sizes.values()), dim=1)
        out = {}
        for (name, _), part in zip(self.sizes.items(), parts, strict=True):
            target = targets[name]
            if name in PAIR_HEADS:  # recall of the true pairs among the top-k, k = how many
                k = target.sum(1, keepdim=True).long()
                ranks = part.argsort(1, descending=True).argsort(1)
                hits = ((ranks < k) & (target > 0)).sum()
                out[name] = float(hits / target.sum().clamp(min=1))
            elif name in CELL_HEADS:  # the content of occupied cells (empty not a choice)
                pred = part.reshape(len(part), CELLS, -1)[..., 1:].argmax(-1) + 1
                occupied = target > 0
                out[name] = float((pred == target)[occupied].float().mean())
            else:
                out[name] = float((part.argmax(-1) == target).float().mean())
        return out
