"""Text-image alignment: CLIP score with torchmetrics' `CLIPScore` and any local open_clip model.

torchmetrics 1.9's `CLIPScore(model_name_or_path=...)` takes either a hub name (downloaded; never
used here) or a callable returning a (model, processor) pair in the transformers interface: the
processor is called as `processor(images=[(3, H, W), ...] | text=[str, ...], return_tensors="pt",
padding=True)` and the model answers `get_image_features(pixel_values)` and
`get_text_features(input_ids, attention_mask)` (and may carry `config.text_config.
max_position_embeddings`). It cannot take an open_clip model itself, so `ClipScoreModel` and
`ClipScoreProcessor` wrap ours in exactly that interface, and `clip_score_metric` hands them to
`CLIPScore` through a callable. torchmetrics then computes 100·cos between the L2-normalised
embeddings and reports max(mean, 0). (Hessel et al.'s CLIPScore clamps each image's cosine
before averaging and scales by 2.5; the two agree whenever no cosine is negative.)

The wrapper also keeps the embeddings torchmetrics asked for, so each image's 100·cos is known
and the figure gets a bootstrap CI without embedding anything twice; the CI resamples prompts,
each with all its seeds' images, as images of one prompt are not independent.

Also here, for the bias metrics: `image_embeddings` and `zero_shot` (zero-shot classification by
the CLIP text tower) with any local CLIP, and `resolve_clip` (the context's or a given folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from base_models.errors import ArtalignError
from evaluation.prompt_sets import samples_of_set
from evaluation.registry import register_metric
from evaluation.stats import Figure, bootstrap_ci, count_groups

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's defaults, when a model has none
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_settings(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(image side, mean, std) the open_clip model was built to read (its preprocess config)."""
    pp = getattr(model.visual, "preprocess_cfg", None) or {}
    size = pp.get("size", getattr(model.visual, "image_size", 224))
    size = size if isinstance(size, int) else size[0]
    return int(size), tuple(pp.get("mean", CLIP_MEAN)), tuple(pp.get("std", CLIP_STD))


def to_clip_pixels(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]):
    """(B, 3, H, W) images (floats in [0, 1] or uint8) -> CLIP input (B, 3, size, size).

    Bicubic antialiased resize and normalisation, as open_clip's preprocess does to PIL images.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class ClipScoreProcessor:
    """The transformers-processor interface torchmetrics calls, over open_clip's preprocessing."""

    def __init__(self, tokenizer: Any, size: int, mean: Sequence[float], std: Sequence[float]):
        self.tokenizer, self.size, self.mean, self.std = tokenizer, size, mean, std

    def __call__(
        self,
        text: Sequence[str] | None = None,
        images: Sequence[torch.Tensor] | None = None,
        return_tensors: str = "pt",
        padding: bool = True,
    ) -> dict[str, torch.Tensor]:
        if images is not None:
            stacked = torch.stack([torch.as_tensor(im) for im in images])  # (B, 3, H, W)
            return {"pixel_values": to_clip_pixels(stacked, self.size, self.mean, self.std)}
        if text is None:
            raise ValueError("ClipScoreProcessor needs text or images")
        ids = self.tokenizer(list(text))  # (B, context_length), padded by open_clip
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class ClipScoreModel(nn.Module):
    """The transformers-CLIPModel interface torchmetrics calls, over an open_clip model.

    Keeps the L2-normalised embeddings of the last calls in `recorded` ("image", "text").
    """

    def __init__(self, clip: nn.Module, context_length: int) -> None:
        super().__init__()
        self.clip = clip.eval()
        # torchmetrics truncates token ids longer than this; open_clip pads to exactly it
        self.config = SimpleNamespace(
            text_config=SimpleNamespace(max_position_embeddings=int(context_length))
        )
        self.recorded: dict[str, list[torch.Tensor]] = {"image": [], "text": []}

    @torch.no_grad()
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        feats = self.clip.encode_image(pixel_values).float()  # (B, D)
        self.recorded["image"].append(F.normalize(feats, dim=-1).cpu())
        return feats

    @torch.no_grad()
    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        feats = self.clip.encode_text(input_ids).float()  # (B, D); open_clip masks causally
        self.recorded["text"].append(F.normalize(feats, dim=-1).cpu())
        return feats


def clip_score_metric(clip: tuple[nn.Module, Any, Any]) -> Any:
    """torchmetrics `CLIPScore` over `clip` = (open_clip model, preprocess, tokenizer)."""
    from torchmetrics.multimodal.clip_score import CLIPScore

    model, _, tokenizer = clip
    size, mean, std = preprocess_settings(model)
    context = int(getattr(tokenizer, "context_length", None) or model.context_length)
    wrapped = ClipScoreModel(model, context)
    processor = ClipScoreProcessor(tokenizer, size, mean, std)
    return CLIPScore(model_name_or_path=lambda: (wrapped, processor))


def clip_scores(
    clip: tuple[nn.Module, Any, Any],
    images: torch.Tensor,
    prompts: Sequence[str],
    batch_size: int = 64,
) -> tuple[float, np.ndarray]:
    """(torchmetrics' CLIP score of all pairs, each pair's 100·cos), images (N, 3, H, W)."""
    if len(images) != len(prompts) or len(prompts) == 0:
        raise ArtalignError(
            f"CLIP score needs one prompt per image; got {len(images)} images "
            f"and {len(prompts)} prompts"
        )
    device = next(clip[0].parameters()).device
    metric = clip_score_metric(clip).to(device)  # its running sums live beside the model
    per_pair = []
    for start in range(0, len(prompts), batch_size):
        metric.model.recorded = {"image": [], "text": []}
        metric.update(
            images[start : start + batch_size].to(device), list(prompts[start : start + batch_size])
        )
        img, txt = (torch.cat(metric.model.recorded[k]) for k in ("image", "text"))
        per_pair.append(100.0 * (img * txt).sum(-1))
    return float(metric.compute()), torch.cat(per_pair).double().numpy()


def _clamped_mean(x: np.ndarray) -> float:
    return max(float(np.mean(x)), 0.0)


def resolve_clip(ctx: Any, clip: str | None = None) -> tuple[nn.Module, Any, Any]:
    """The context's CLIP, or the local open_clip folder `clip` (loaded once per context)."""
    if clip is None:
        return ctx.clip
    # lazy: open_clip
    from base_models.clip.model_io import load_clip

    loaded = ctx.__dict__.setdefault("_named_clips", {})
    if clip not in loaded:
        loaded[clip] = load_clip(clip, device=ctx.device)
    return loaded[clip]


@register_metric("clip_score", aspect="alignment", higher_is_better=True)
def clip_score(
    ctx: Any, samples: Any, on: str = "composition", clip: str | None = None, batch_size: int = 64
) -> dict[str, Figure]:
    """CLIP score (torchmetrics' CLIPScore, 100·cos, 0–100) of each image with its prompt."""
    chosen = samples_of_set(samples, on, "clip_score")
    value, per_pair = clip_scores(
        resolve_clip(ctx, clip), chosen.images, chosen.prompts, batch_size
    )
    ci = bootstrap_ci(per_pair, _clamped_mean, ctx.n_boot, seed=ctx.seed, groups=chosen.prompts)
    return {"clip_score": Figure(value, len(per_pair), ci, True, count_groups(chosen.prompts))}


# ----------------------------------------------------------------------- zero-shot, for bias


@torch.no_grad()
def image_embeddings(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised CLIP embeddings (N, D) of images (N, 3, H, W) in [0, 1], on the CPU."""
    size, mean, std = preprocess_settings(model)
    device = next(model.parameters()).device
    out = []
    for chunk in images.split(batch_size):
        x = to_clip_pixels(chunk.to(device), size, mean, std)
        out.append(F.normalize(model.encode_image(x).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def class_embeddings(
    model: nn.Module, tokenizer: Any, classes: Sequence[Sequence[str]]
) -> torch.Tensor:
    """One L2-normalised text embedding per class (C, D): the mean of its prompts' embeddings."""
    # lazy: open_clip
    from base_models.clip.model_io import embed_texts

    if len(classes) < 2 or any(len(c) == 0 for c in classes):
        raise ArtalignError("zero-shot classification needs >= 2 classes, each with a prompt")
    rows = [embed_texts(model, tokenizer, list(prompts)).mean(0) for prompts in classes]
    return F.normalize(torch.stack(rows), dim=-1)


def zero_shot(
    clip: tuple[nn.Module, Any, Any],
    images: torch.Tensor | None,
    classes: Sequence[Sequence[str]],
    embeddings: torch.Tensor | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """The class (index into `classes`) whose prompts CLIP finds closest to each image (N,).

    Pass `embeddings` (from `image_embeddings`) instead of `images` to classify the same images
    against several class lists without embedding them again.
    """
    model, _, tokenizer = clip
    feats = embeddings
    if feats is None:
        if images is None or len(images) == 0:
            raise ArtalignError("zero-shot classification needs at least one image")
        feats = image_embeddings(model, images, batch_size)
    text = class_embeddings(model, tokenizer, classes)  # (C, D)
    return (feats @ text.T).argmax(-1).numpy()  # (N,)
