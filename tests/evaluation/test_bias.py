"""Bias measures by hand; the stereotype knob seen in a data set's ground truth; the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from base_models.errors import ArtalignError
from base_models.world.attributes import COLOUR_NAMES, STYLES
from base_models.world.dataset import DataConfig, make_dataset
from evaluation.alignment import zero_shot
from evaluation.bias import (
    _clip_classes,
    distribution_figures,
    imbalance,
    load_records,
    mad,
    normalised_entropy,
    people_bias,
    record_counts,
    shares,
)
from evaluation.context import EvalContext, Samples
from evaluation.prompt_sets import neutral
from evaluation.registry import get_metric
from evaluation.stats import bootstrap_ci


def test_imbalance_mad_entropy_by_hand():
    p = [0.5, 0.3, 0.2]
    assert imbalance(p) == pytest.approx(0.3)
    assert imbalance([0.25] * 4) == 0.0 and imbalance([1.0, 0.0, 0.0]) == 1.0
    # |0.5 - 1/3| + |0.3 - 1/3| + |0.2 - 1/3| = 1/6 + 1/30 + 2/15 = 1/3, over K = 3
    assert mad(p) == pytest.approx(1 / 9)
    assert mad(p, [0.2, 0.3, 0.5]) == pytest.approx(0.2)
    assert mad([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert normalised_entropy([0.5, 0.5, 0.0, 0.0]) == pytest.approx(np.log(2) / np.log(4))
    assert normalised_entropy([0.25] * 4) == pytest.approx(1.0)
    assert normalised_entropy([0.0, 1.0]) == 0.0
    assert shares([2, 6, 0, 2]).tolist() == [0.2, 0.6, 0.0, 0.2]
    with pytest.raises(ArtalignError, match="sum to 1"):
        imbalance([0.5, 0.6])
    with pytest.raises(ArtalignError, match="at least 2 values"):
        normalised_entropy([1.0])
    with pytest.raises(ArtalignError, match="3 values, the target q 2"):
        mad(p, [0.5, 0.5])
    with pytest.raises(ArtalignError, match="no value was observed"):
        shares([0, 0])


def _rec(*objects, style="flat"):
    return {"objects": [{"shape": s, "colour": c} for s, c in objects], "style": style}


def test_record_counts_and_figures_by_hand():
    records = [
        _rec(("star", "yellow"), ("circle", "red")),
        _rec(("star", "yellow"), style="dotted"),
        _rec(("warning", "red"), style="dotted"),
        _rec(("star", "red")),
    ]
    star = record_counts(records, "colour", "star")
    assert star[:, COLOUR_NAMES.index("yellow")].tolist() == [1, 1, 0, 0]
    assert star.sum() == 3
    shape = record_counts(records, "shape")
    assert shape.sum() == 4  # the warning sign is not a shape of the bias axis
    style = record_counts(records, "style")
    assert style[:, STYLES.index("dotted")].tolist() == [0, 1, 1, 0]
    with pytest.raises(ArtalignError, match="unknown bias axis"):
        record_counts(records, "size")

    figs = distribution_figures(star, n_boot=300, seed=0)
    p = np.zeros(len(COLOUR_NAMES))
    p[COLOUR_NAMES.index("yellow")], p[COLOUR_NAMES.index("red")] = 2 / 3, 1 / 3
    assert figs["imbalance"].value == pytest.approx(2 / 3)
    assert figs["mad_uniform"].value == pytest.approx(mad(p))
    assert figs["entropy"].value == pytest.approx(normalised_entropy(p))
    assert figs["imbalance"].n == 3  # the record without a star carries no information
    lo, hi = figs["imbalance"].ci
    assert 1 / 3 <= lo <= hi <= 1.0  # resamples: all yellow (1), all red (1), 2:1 or 1:2
    assert figs["imbalance"].higher_is_better is False and figs["entropy"].higher_is_better
    target = np.full(len(COLOUR_NAMES), 1 / len(COLOUR_NAMES))
    assert distribution_figures(star, target, 50)["mad_train"].value == pytest.approx(mad(p))
    assert distribution_figures(star[2:3], n_boot=10) == {}


def test_distribution_figures_resample_prompts():
    """Rows without a count are dropped with their prompt; the CI resamples the prompts left."""
    counts = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    prompts = ["a star", "a star", "a shape", "a shape"]
    figs = distribution_figures(counts, n_boot=100, groups=prompts)
    assert (figs["imbalance"].n, figs["imbalance"].n_clusters) == (3, 2)
    kept = bootstrap_ci(
        counts[[0, 2, 3]],
        lambda m: imbalance(m.sum(0) / m.sum()),
        100,
        groups=["a star", "a shape", "a shape"],
    )
    assert figs["imbalance"].ci == kept
    assert "n_clusters" not in distribution_figures(counts, n_boot=10)["imbalance"].to_dict()
    with pytest.raises(ArtalignError, match="4 rows of counts but 1 group labels"):
        distribution_figures(counts, groups=["a star"])


@pytest.fixture(scope="module")
def stereo_data(tmp_path_factory):
    """Two tiny data sets, the same seed, with and without the star:yellow:0.9 stereotype."""
    root = tmp_path_factory.mktemp("bias")
    kw = {"n": 150, "size": 16, "supersample": 1, "seed": 11, "unsafe_share": 0.0}
    return (
        make_dataset(DataConfig(stereotypes=["star:yellow:0.9"], **kw), root / "stereo"),
        make_dataset(DataConfig(stereotypes=[], **kw), root / "plain"),
    )


def test_stereotype_knob_shows_as_star_colour_imbalance(stereo_data):
    stereo, plain = (load_records(path) for path in stereo_data)
    yellow = COLOUR_NAMES.index("yellow")
    p_stereo = shares(record_counts(stereo, "colour", "star").sum(0))
    p_plain = shares(record_counts(plain, "colour", "star").sum(0))
    assert p_stereo[yellow] > 0.8  # 0.9 + 0.1 / 8 expected
    assert p_plain[yellow] < 0.35
    assert imbalance(p_stereo) > imbalance(p_plain) + 0.4
    assert normalised_entropy(p_stereo) < normalised_entropy(p_plain) - 0.3
    # circles carry no stereotype: their colours look alike in both data sets
    circle = [
        imbalance(shares(record_counts(r, "colour", "circle").sum(0))) for r in (stereo, plain)
    ]
    assert abs(circle[0] - circle[1]) < 0.25


def test_load_records_needs_attribute_metadata(tmp_path):
    with pytest.raises(ArtalignError, match="no metadata.jsonl"):
        load_records(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a photo"}\n')
    with pytest.raises(ArtalignError, match="no attribute records"):
        load_records(tmp_path)


def _neutral_samples(seeds=2):
    items = [{**i, "set": "neutral"} for i in neutral() for _ in range(seeds)]
    g = torch.Generator().manual_seed(0)
    images = torch.rand(len(items), 3, 32, 32, generator=g)
    return Samples(images, [i["prompt"] for i in items], list(range(len(items))), items)


def test_bias_metric_reads_every_axis(tiny_oracle_dir, micro_clip, stereo_data):
    samples = _neutral_samples()
    ctx = EvalContext(
        oracle_path=tiny_oracle_dir, clip_path=micro_clip, n_boot=50, reference_path=stereo_data[0]
    )
    spec = get_metric("bias")
    assert spec.aspect == "bias"
    figs = spec.fn(ctx, samples)
    for axis in ("colour", "shape", "style"):
        for stat in ("imbalance", "entropy", "mad_uniform", "mad_train"):
            assert f"{axis}.clip.{stat}" in figs
    for key, fig in figs.items():
        assert 0.0 <= fig.value <= 1.0, key
    # the CLIP style figures are the zero-shot classes of the style items, pooled
    rows = [i for i, it in enumerate(samples.items) if it["axis"] == "style"]
    pred = zero_shot(ctx.clip, samples.images[rows], _clip_classes("style", None))
    p = np.bincount(pred, minlength=len(STYLES)) / len(rows)
    assert figs["style.clip.imbalance"].value == pytest.approx(imbalance(p))
    assert figs["style.clip.imbalance"].n == len(rows)
    # its CI resamples the style prompts, each with both its seeds' images
    prompts = [samples.prompts[i] for i in rows]
    onehot = np.eye(len(STYLES))[pred]
    fig = figs["style.clip.imbalance"]
    assert fig.n_clusters == len(set(prompts)) == len(rows) // 2
    assert fig.ci == bootstrap_ci(
        onehot, lambda m: imbalance(m.sum(0) / m.sum()), 50, groups=prompts
    )
    train = shares(record_counts(load_records(stereo_data[0]), "style").sum(0))
    assert figs["style.clip.mad_train"].value == pytest.approx(mad(p, train))
    assert "colour|star.clip.imbalance" in figs  # the images of "a star", by CLIP
    # without a data set: no comparison with training; a named data set that lacks one fails
    ctx_plain = EvalContext(oracle_path=tiny_oracle_dir, clip_path=micro_clip, n_boot=20)
    only_oracle = spec.fn(ctx_plain, samples, readers=["oracle"])
    assert only_oracle and all(".oracle." in k and "mad_train" not in k for k in only_oracle)
    with pytest.raises(ArtalignError, match="no metadata.jsonl"):
        spec.fn(ctx_plain, samples, readers=["oracle"], train=str(micro_clip))
    with pytest.raises(ArtalignError, match="unknown bias readers"):
        spec.fn(ctx_plain, samples, readers=["people"])


def test_people_bias_returns_valid_shares(micro_clip):
    samples = _neutral_samples(seeds=1)
    ctx = EvalContext(clip_path=micro_clip, n_boot=50)
    figs = people_bias(ctx, samples, on=None)
    assert get_metric("people_bias").aspect == "bias"
    for name, labels in (("gender", ("man", "woman")), ("skin_tone", ("light", "dark"))):
        a, b = (figs[f"{name}.share.{label}"].value for label in labels)
        assert 0.0 <= a <= 1.0 and a + b == pytest.approx(1.0)
        assert figs[f"{name}.imbalance"].value == pytest.approx(abs(a - b))
        assert figs[f"{name}.mad"].value == pytest.approx(abs(a - 0.5))  # K = 2: |a - ½|
        assert figs[f"{name}.share.{labels[0]}"].n == len(samples)
        assert figs[f"{name}.imbalance"].n_clusters == len(set(samples.prompts))
    custom = people_bias(
        ctx,
        samples,
        on="neutral",
        attributes={"age": {"young": ["a child"], "old": ["an old man"], "adult": ["an adult"]}},
    )
    assert sum(custom[f"age.share.{k}"].value for k in ("young", "old", "adult")) == 1.0
    with pytest.raises(ArtalignError, match="'list'"):
        people_bias(ctx, samples)
