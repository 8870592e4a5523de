"""UniCL targets (Yang et al. 2022, arXiv 2204.03610): a caption is a positive for every image it
describes truly, not only for its own.

Procedural captions repeat ("a small red circle on a white background, flat style" fits many
images), and plain InfoNCE pushes an image away from every true caption but one. Here each item
has a meaning key for its caption and the set of keys its image satisfies:

- with an attribute record: the caption means the canonical caption of the scene, with positions
  when the caption names a position and without when it does not; the image satisfies both forms.
- without one (e.g. web data): the caption means its own text, and the image satisfies that text.

`positive_mask(i, j)` is True when caption j is true of image i. With all keys distinct it is the
identity and the loss is CLIP's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from base_models.world.attributes import POSITION_NAMES, SceneSpec
from base_models.world.captions import canonical_caption

_POSITION_PHRASES = tuple(f" in the {p}" for p in POSITION_NAMES)


def names_position(text: str) -> bool:
    """Whether a caption places an object ("... in the top left")."""
    return any(p in text for p in _POSITION_PHRASES)


def scene_of(attrs: dict[str, Any] | None) -> SceneSpec | None:
    """The scene of a procedural attribute record, or None (no record, or not a scene)."""
    if not attrs or not isinstance(attrs.get("objects"), list):
        return None
    try:
        return SceneSpec.from_record(attrs)
    except (KeyError, TypeError, ValueError):
        return None


def meaning_keys(texts: Sequence[str], attrs: Sequence[dict[str, Any] | None]) -> list[str]:
    """Per item, what its caption asserts (see the module docstring)."""
    keys = []
    for text, rec in zip(texts, attrs, strict=True):
        scene = scene_of(rec)
        keys.append(text if scene is None else canonical_caption(scene, names_position(text)))
    return keys


def image_keys(texts: Sequence[str], attrs: Sequence[dict[str, Any] | None]) -> list[set[str]]:
    """Per item, every meaning key its image satisfies."""
    keys = []
    for text, rec in zip(texts, attrs, strict=True):
        scene = scene_of(rec)
        if scene is None:
            keys.append({text})
        else:
            keys.append({canonical_caption(scene, True), canonical_caption(scene, False)})
    return keys


class KeyIndex:
    """Integer ids for meaning keys, so a batch's mask is a few tensor comparisons.

    caption_id: (N,) the id of each caption's meaning; image_ids: (N, 2) the ids an image
    satisfies (the second repeats the first when there is only one).
    """

    def __init__(self, meanings: Sequence[str], satisfied: Sequence[set[str]]) -> None:
        ids: dict[str, int] = {}
        self.caption_id = torch.tensor([ids.setdefault(k, len(ids)) for k in meanings])
        rows = []
        for keys in satisfied:
            row = sorted(ids.setdefault(k, len(ids)) for k in keys)
            rows.append((row + row)[:2])
        self.image_ids = torch.tensor(rows)

    def mask(self, image_index: torch.Tensor, text_index: torch.Tensor) -> torch.Tensor:
        """(B_images, B_texts) bool: caption text_index[j] is true of image image_index[i]."""
        caption = self.caption_id[text_index].view(1, -1)
        return (self.image_ids[image_index].unsqueeze(-1) == caption.unsqueeze(0)).any(1)


def contrastive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    positives: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
    has_negative: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's or SigLIP's loss with a positive mask instead of the identity.

    image, text: (B, D) normalised features; positives: (B, B) bool with a True diagonal,
    positives[i, j] = caption j is true of image i. logit_scale is already exponentiated.
    Softmax (no bias): symmetric cross-entropy against the positives, uniform over each row's
    (UniCL). Sigmoid (with a bias, SigLIP): every pair a binary label, summed per image.
    With the identity mask both equal open_clip's ClipLoss and SigLipLoss.
    negatives: (B, D) features of one hard-negative caption per image (row i is image i's own,
    e.g. its caption with colours swapped), used where has_negative (B,) is True: one more
    column of image i's softmax, or one more negative pair for the sigmoid.
    """
    logits = logit_scale * image @ text.T
    pos = positives.float()
    hard = None
    if negatives is not None:
        valid = torch.ones(len(image), dtype=torch.bool, device=image.device)
        valid = valid if has_negative is None else has_negative.to(image.device)
        hard = (logit_scale * (image * negatives).sum(-1), valid)
    if logit_bias is not None:
        labels = 2 * pos - 1
        loss = -torch.nn.functional.logsigmoid(labels * (logits + logit_bias)).sum()
        if hard is not None:
            loss = loss - torch.nn.functional.logsigmoid(-(hard[0] + logit_bias))[hard[1]].sum()
        return loss / len(image)
    i2t_logits = logits
    if hard is not None:
        extra = hard[0].masked_fill(~hard[1], float("-inf")).unsqueeze(1)
        i2t_logits = torch.cat([logits, extra], dim=1)
    i2t_logp = i2t_logits.log_softmax(1)[:, : logits.shape[1]]
    i2t = -(pos / pos.sum(1, keepdim=True) * i2t_logp).sum(1).mean()
    t2i = -(pos / pos.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2
