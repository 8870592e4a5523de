"""Stage 2 of `train-clip` with a locked image tower: LiT (Zhai et al. 2022, arXiv 2111.07991).

The image tower is frozen, so its embeddings are computed once per view (as stored, and flipped
where the caption allows) and each step runs only the text tower: on a CPU that makes a step
several times cheaper than training both towers. The loss is CLIP's symmetric InfoNCE with UniCL
targets (`positives.py`): captions that are true of an image count as its positives.
"""

from __future__ import annotations

from typing import Any

import torch

from base_models.clip.data import PairSet
from base_models.clip.positives import KeyIndex, image_keys, meaning_keys
from base_models.data import mirror_attrs


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


def view_keys(pairs: PairSet, unicl: bool) -> KeyIndex:
    """Meaning keys of the 2N views (flipped views: mirrored caption and attributes).

    Without UniCL every view's caption is its own key, so the mask is the identity.
    """
    n = len(pairs)
    if not unicl:
        ids = [str(i) for i in range(2 * n)]
        return KeyIndex(ids, [{k} for k in ids])
    texts = list(pairs.texts) + list(pairs.flip_texts)
    attrs: list[dict[str, Any]] = list(pairs.attrs)
    flippable = pairs.flippable.tolist()
    attrs += [
        mirror_attrs(a) if a and ok else a for a, ok in zip(pairs.attrs, flippable, strict=True)
    ]
    return KeyIndex(meaning_keys(texts, attrs), image_keys(texts, attrs))


def view_batch(
    pairs: PairSet, index: torch.Tensor, hflip: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices into the 2N views and the caption tokens of each, flipping where allowed."""
    flip = (torch.rand(len(index), generator=generator) < hflip) & pairs.flippable[index]
    rows = index + flip.long() * len(pairs)
    tokens = torch.where(flip.view(-1, 1), pairs.flip_tokens[index], pairs.tokens[index])
    return rows, tokens.long()


def text_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Everything but the image tower: token and positional embeddings, the text transformer,
    its final norm and projection, the logit scale (and bias)."""
    return [(n, p) for n, p in model.named_parameters() if not n.startswith("visual.")]
