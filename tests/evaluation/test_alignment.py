"""CLIP score through torchmetrics' CLIPScore with our open_clip model; zero-shot classification.

The reference values are computed by hand from open_clip itself: its own PIL preprocess and
encode_image / encode_text, so the wrapper's resizing, normalising and tokenising are checked too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from base_models.clip.model_io import load_clip
from base_models.errors import ArtalignError
from evaluation.alignment import clip_score_metric, clip_scores, resolve_clip, zero_shot
from evaluation.context import EvalContext, Samples
from evaluation.registry import get_metric

PROMPTS = [
    "a red star",
    "a large blue circle on a white background, flat style",
    "two shapes",
    "a green heart in the top left",
]


@pytest.fixture(scope="module")
def clip(micro_clip):
    return load_clip(micro_clip)


@pytest.fixture(scope="module")
def images():
    """Six 32x32 images on the uint8 grid (so the PIL route sees exactly the same pixels)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (6, 3, 32, 32), generator=g).float() / 255.0


def hand_cosines(clip, images, prompts):
    """cos(image i, prompt j) (N, P) by open_clip's own preprocess and towers."""
    model, preprocess, tokenizer = clip
    pils = [Image.fromarray((im.permute(1, 2, 0) * 255).round().byte().numpy()) for im in images]
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(p) for p in pils]))
        txt = model.encode_text(tokenizer(prompts))
    return (F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T).double().numpy()


def test_clip_score_is_100_max_cos_0_per_pair(clip, images):
    cos = hand_cosines(clip, images, PROMPTS)
    assert cos.max() > 0 > cos.min()  # both sides of the clamp are exercised
    for i, j in (
        np.unravel_index(cos.argmax(), cos.shape),
        np.unravel_index(cos.argmin(), cos.shape),
    ):
        value, per_pair = clip_scores(clip, images[i : i + 1], [PROMPTS[j]])
        assert value == pytest.approx(100 * max(cos[i, j], 0.0), abs=1e-3)
        assert per_pair[0] == pytest.approx(100 * cos[i, j], abs=1e-3)


def test_clip_score_of_a_batch_is_torchmetrics_mean(clip, images):
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(images))]
    cos = np.diag(hand_cosines(clip, images, prompts))
    value, per_pair = clip_scores(clip, images, prompts, batch_size=4)  # 2 batches
    np.testing.assert_allclose(per_pair, 100 * cos, atol=1e-3)
    assert value == pytest.approx(max(100 * cos.mean(), 0.0), abs=1e-3)
    # the same pairs through a plain CLIPScore update (one batch) agree
    metric = clip_score_metric(clip)
    metric.update(images, prompts)
    assert float(metric.compute()) == pytest.approx(value, abs=1e-4)
    with pytest.raises(ArtalignError, match="one prompt per image"):
        clip_scores(clip, images, prompts[:2])


def test_clip_score_metric(micro_clip, images):
    items = [{"prompt": p, "category": "list", "set": "list"} for p in PROMPTS[:3]] * 2
    samples = Samples(images, [i["prompt"] for i in items], list(range(6)), items)
    ctx = EvalContext(clip_path=micro_clip, n_boot=200)
    spec = get_metric("clip_score")
    assert spec.aspect == "alignment" and spec.higher_is_better
    figs = spec.fn(ctx, samples, on="list")
    value, per_pair = clip_scores(ctx.clip, images, samples.prompts)
    fig = figs["clip_score"]
    assert fig.value == pytest.approx(value) and fig.n == 6 and fig.higher_is_better
    lo, hi = fig.ci
    assert 0.0 <= lo <= hi <= max(per_pair.max(), 0.0)
    # a CLIP named by folder (any local open_clip folder) gives the same figure
    assert spec.fn(ctx, samples, on="list", clip=str(micro_clip))["clip_score"] == fig
    assert resolve_clip(ctx, str(micro_clip)) is resolve_clip(ctx, str(micro_clip))
    with pytest.raises(ArtalignError, match="'composition'"):
        spec.fn(ctx, samples)


def test_zero_shot_picks_the_nearest_class(clip, images):
    classes = [["a red star"], ["two shapes", "a green heart in the top left"]]
    model, _, tokenizer = clip
    cos = hand_cosines(clip, images, [p for c in classes for p in c])
    # class 1's embedding is the normalised mean of its two prompts' embeddings
    with torch.no_grad():
        txt = F.normalize(model.encode_text(tokenizer([p for c in classes for p in c])), dim=-1)
    centre = F.normalize(txt[1:].mean(0), dim=0)
    ratio = float(torch.linalg.norm(txt[1:].mean(0)))  # cos to the centre = mean cos / |mean|
    hand = np.stack([cos[:, 0], cos[:, 1:].mean(1) / ratio], axis=1).argmax(1)
    assert centre.shape == txt[0].shape
    np.testing.assert_array_equal(zero_shot(clip, images, classes), hand)
    with pytest.raises(ArtalignError, match=">= 2 classes"):
        zero_shot(clip, images, [["only one"]])
