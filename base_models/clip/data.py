"""Training pairs for CLIP, held in memory: images decoded once, captions tokenised once.

A tiny CLIP takes a few milliseconds per image on a CPU, so decoding a PNG and tokenising a
caption for every sample would cost as much as the model. Here the whole set becomes a uint8
tensor (N, 3, S, S) plus token tensors, and a batch is built by indexing and a few tensor ops.

Augmentation stays caption-safe: a horizontal flip uses the pre-tokenised mirrored caption
(left/right swapped, `base_models.data.mirror_text`) and is skipped where `can_flip` says the
caption would become false; a shift of a pixel or two keeps every object in its grid cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from base_models.data import can_flip, has_spatial_attrs, load_records, mirror_text
from base_models.errors import ArtalignError
from base_models.imaging import square_crop
from base_models.progress import cleared_on_error


@dataclass
class PairSet:
    """All training pairs in memory.

    images: (N, 3, S, S) uint8; tokens / flip_tokens: (N, T) caption tokens and those of the
    mirrored caption; flippable: (N,) whether a flip keeps the caption true.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    flip_tokens: torch.Tensor
    flippable: torch.Tensor
    ids: list[str]
    texts: list[str]
    flip_texts: list[str]  # the caption of the flipped image (the caption itself if unflippable)
    attrs: list[dict[str, Any]]  # each item's attribute record ({} for data without one)
    source_size: int  # side of the first image as stored, before resizing to the model's

    def __len__(self) -> int:
        return len(self.ids)


def _tokenise(tokenizer: Any, texts: Sequence[str], chunk: int = 4096) -> torch.Tensor:
    parts = [tokenizer(list(texts[i : i + chunk])) for i in range(0, len(texts), chunk)]
    return torch.cat(parts).to(torch.int32)


def load_pairs(
    source: str | Path,
    image_size: int,
    tokenizer: Any,
    max_items: int = 0,
    opt_out: str | Path | None = None,
) -> PairSet:
    """Read a data set in any supported format (minus opted-out items) into a PairSet."""
    records = load_records(source, opt_out=opt_out)
    if max_items:
        records = records[:max_items]
    images = np.empty((len(records), image_size, image_size, 3), dtype=np.uint8)
    texts, flipped, flippable = [], [], []
    source_size = 0
    bar = tqdm(total=len(records), desc="decode", unit="img", mininterval=2.0)
    with cleared_on_error(bar):
        for i, rec in enumerate(records):
            image = rec.load_image()
            source_size = source_size or min(image.size)
            images[i] = square_crop(image, image_size)
            texts.append(rec.text)
            ok = can_flip(rec.text, rec.attrs)
            flippable.append(ok)
            flip = mirror_text(rec.text) if ok and has_spatial_attrs(rec.attrs) else rec.text
            flipped.append(flip)
            bar.update()
    tokens = _tokenise(tokenizer, texts)
    changed = [i for i, (a, b) in enumerate(zip(texts, flipped, strict=True)) if a != b]
    flip_tokens = tokens.clone()
    if changed:
        flip_tokens[changed] = _tokenise(tokenizer, [flipped[i] for i in changed])
    return PairSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        tokens=tokens,
        flip_tokens=flip_tokens,
        flippable=torch.tensor(flippable, dtype=torch.bool),
        ids=[r.id for r in records],
        texts=texts,
        flip_texts=flipped,
        attrs=[r.attrs for r in records],
        source_size=source_size,
    )


class BatchMaker:
    """Builds normalised, augmented batches from a PairSet; randomness from a given generator."""

    def __init__(
        self,
        pairs: PairSet,
        mean: Sequence[float],
        std: Sequence[float],
        hflip: float = 0.0,
        max_shift: int = 0,
    ) -> None:
        if len(pairs) == 0:
            raise ArtalignError("the training set is empty")
        self.pairs = pairs
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.hflip = hflip
        self.max_shift = max_shift

    def __call__(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, S, S) float32 and tokens (B, T) int64 of the items in `index`."""
        x, tokens, _ = self.views(index, generator)
        return x, tokens

    def views(
        self, index: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As __call__, plus each sample's view row: index, or index + N where flipped."""
        p = self.pairs
        images = p.images[index]  # (B, 3, S, S) uint8
        tokens = p.tokens[index]
        rows = index.clone()
        if self.hflip > 0:
            flip = (torch.rand(len(index), generator=generator) < self.hflip) & p.flippable[index]
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            tokens = torch.where(flip.view(-1, 1), p.flip_tokens[index], tokens)
            rows = rows + flip.long() * len(p)
        if self.max_shift > 0:
            images = shift_images(images, self.max_shift, generator)
        x = (images.float() - self.mean) / self.std
        return x, tokens.long(), rows


def shift_images(
    images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Translate each image (B, C, S, S) by up to max_shift pixels, repeating the edge pixels."""
    m, (b, c, s, _) = max_shift, images.shape
    padded = torch.nn.functional.pad(images.float(), (m, m, m, m), mode="replicate")
    dy, dx = torch.randint(0, 2 * m + 1, (2, b), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(s)).view(b, 1, s, 1).expand(b, c, s, s + 2 * m)
    out = padded.gather(2, rows)
    cols = (dx.view(b, 1) + torch.arange(s)).view(b, 1, 1, s).expand(b, c, s, s)
    return out.gather(3, cols).to(images.dtype)
