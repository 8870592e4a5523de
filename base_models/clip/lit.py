"""Stage 2 of `train-clip` with a locked image tower: LiT (Zhai et al. 2022, arXiv 2111.07991).

The image tower is frozen, so its embeddings are computed once per view (as stored, and flipped
where the caption allows) and each step runs only the text tower: on a CPU that makes a step
several times cheaper than training both towers. The loss is CLIP's symmetric InfoNCE with UniCL
targets (`positives.py`): captions that are true of an image count as its positives.
Optionally (swap_negatives), each image also meets its own caption with two objects' colours
exchanged as an extra negative, the NegCLIP recipe for attribute binding.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np
import torch

from base_models.clip.data import PairSet
from base_models.clip.positives import KeyIndex, image_keys, meaning_keys, names_position, scene_of
from base_models.data import mirror_attrs
from base_models.world.attributes import SceneSpec
from base_models.world.captions import canonical_caption


@torch.no_grad()
def image_views(
    visual: torch.nn.Module,
    pairs: PairSet,
    mean: torch.Tensor,
    std: torch.Tensor,
    device: torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    """(2N, D) L2-normalised embeddings: rows [0, N) the images as stored, [N, 2N) flipped."""
    was_training = visual.training
    visual.eval()
    out = []
    for flip in (False, True):
        for start in range(0, len(pairs), batch_size):
            images = pairs.images[start : start + batch_size]
            images = images.flip(-1) if flip else images
            x = ((images.float() - mean) / std).to(device)
            out.append(torch.nn.functional.normalize(visual(x).float(), dim=-1).cpu())
    visual.train(was_training)
    return torch.cat(out)


def view_keys(pairs: PairSet) -> KeyIndex:
    """UniCL meaning keys of the 2N views (flipped views: mirrored caption and attributes)."""
    texts, attrs = _views(pairs)
    return KeyIndex(meaning_keys(texts, attrs), image_keys(texts, attrs))


def _views(pairs: PairSet) -> tuple[list[str], list[dict[str, Any]]]:
    """Captions and attribute records of the 2N views (flipped: mirrored where flippable)."""
    flippable = pairs.flippable.tolist()
    mirrored = [
        mirror_attrs(a) if a and ok else a for a, ok in zip(pairs.attrs, flippable, strict=True)
    ]
    return list(pairs.texts) + list(pairs.flip_texts), list(pairs.attrs) + mirrored


def view_batch(
    pairs: PairSet, index: torch.Tensor, hflip: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices into the 2N views and the caption tokens of each, flipping where allowed."""
    flip = (torch.rand(len(index), generator=generator) < hflip) & pairs.flippable[index]
    rows = index + flip.long() * len(pairs)
    tokens = torch.where(flip.view(-1, 1), pairs.flip_tokens[index], pairs.tokens[index])
    return rows, tokens.long()


def swapped_caption(text: str, attrs: dict[str, Any] | None, seed: int) -> str | None:
    """A hard negative for binding (NegCLIP, Yuksekgonul et al. 2023): the caption of the same
    scene with two objects' colours exchanged, or None when no two objects differ in colour.

    The wording follows the caption's: the same template family, positions only when it names
    them. Built from the record, so it states exactly the swap and nothing else.
    """
    scene = scene_of(attrs)
    if scene is None:
        return None
    pairs = [
        (i, j)
        for i in range(scene.count)
        for j in range(i + 1, scene.count)
        if scene.objects[i].colour != scene.objects[j].colour
    ]
    if not pairs:
        return None
    rng = np.random.default_rng([seed, zlib.crc32(text.encode())])
    i, j = pairs[int(rng.integers(len(pairs)))]
    objects = [dataclasses.replace(o) for o in scene.objects]
    objects[i].colour, objects[j].colour = scene.objects[j].colour, scene.objects[i].colour
    swapped = SceneSpec(objects, scene.background, scene.style)
    return canonical_caption(swapped, names_position(text))


def negative_views(pairs: PairSet, tokenizer: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (2N, T) of each view's colour-swapped caption and (2N,) whether it has one.

    Views as in `view_keys`: rows [0, N) as stored, [N, 2N) flipped (mirrored attributes).
    """
    texts, attrs = _views(pairs)
    negatives = [swapped_caption(t, a, seed) for t, a in zip(texts, attrs, strict=True)]
    has = torch.tensor([n is not None for n in negatives])
    tokens = tokenizer([n or "" for n in negatives]).to(torch.int32)
    return tokens, has
