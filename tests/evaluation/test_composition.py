"""Composition scoring rules on hand-made readings; the metric's plumbing; efficiency."""

from __future__ import annotations

import pytest
import torch

from base_models.errors import ArtalignError
from base_models.oracle.fidelity import parse_prompt
from base_models.oracle.reading import read_images
from evaluation.composition import (
    composition,
    composition_figures,
    item_correct,
    score_groups,
    score_items,
    stratified_ci,
)
from evaluation.context import EvalContext, Samples
from evaluation.efficiency import efficiency, throughput
from evaluation.prompt_sets import composition as composition_set
from evaluation.registry import get_metric
from evaluation.stats import bootstrap_ci


def obj(shape, colour="red", row=1, col=1, size="medium"):
    return {"shape": shape, "colour": colour, "size": size, "row": row, "col": col}


def reading(*objects, background="white", style="flat"):
    """A fake oracle reading (metadata.jsonl layout): tests the rules, not the oracle."""
    return {"objects": list(objects), "background": background, "style": style}


def item(category, prompt, **extra):
    return {"prompt": prompt, "category": category, "required": parse_prompt(prompt), **extra}


SINGLE = item("single_object", "a small red star on a white background, flat style")
TWO = item("two_objects", "a red star and a blue circle on a white background, flat style")
COUNT = item(
    "counting", "three shapes in flat style: a red star, a blue circle and a green heart, on white"
)
COLOUR = item("colours", "a large blue star on a gray background, dotted style")
POSITION = item("position", "a red star in the top left on a white background, flat style")
ATTRIBUTION = item("colour_attribution", "a red star and a blue circle on black, flat style")
HELDOUT = item(
    "heldout",
    "a green circle on a white background, flat style",
    heldout_pairs=[["green", "circle"]],
)


@pytest.mark.parametrize(
    ("case", "read", "expected"),
    [
        (SINGLE, reading(obj("star", "blue")), True),  # the shape is what single_object asks
        (SINGLE, reading(obj("circle")), False),
        (TWO, reading(obj("circle", "green"), obj("star", "pink", 0, 0)), True),
        (TWO, reading(obj("star"), obj("star", "blue", 0, 0)), False),  # one star, no circle
        (TWO, reading(obj("star")), False),
        (COUNT, reading(obj("star"), obj("star", row=0), obj("star", row=2)), True),
        (COUNT, reading(obj("star"), obj("circle", "blue", 0)), False),
        (COLOUR, reading(obj("star", "blue")), True),
        (COLOUR, reading(obj("star", "red"), obj("circle", "blue", 0)), False),  # blue is unbound
        (COLOUR, reading(obj("circle", "blue")), False),
        (POSITION, reading(obj("star", "green", row=0, col=0)), True),
        (POSITION, reading(obj("star", row=0, col=1)), False),
        (ATTRIBUTION, reading(obj("star", "red"), obj("circle", "blue", 0)), True),
        (ATTRIBUTION, reading(obj("star", "blue"), obj("circle", "red", 0)), False),  # swapped
        (HELDOUT, reading(obj("circle", "green")), True),
        (HELDOUT, reading(obj("circle", "red"), obj("heart", "green", 0)), False),
    ],
)
def test_category_rules(case, read, expected):
    assert item_correct(read, case) is expected


def test_colour_attribution_is_stricter_than_two_objects():
    swapped = reading(obj("star", "blue"), obj("circle", "red", 0))
    assert item_correct(swapped, {**TWO, "required": ATTRIBUTION["required"]})
    assert not item_correct(swapped, ATTRIBUTION)


def test_other_categories_need_every_asked_attribute():
    cap = item("captions", "a small red star on a white background, flat style")
    assert item_correct(reading(obj("star", size="small")), cap)
    assert not item_correct(reading(obj("star", size="small"), style="dotted"), cap)
    with pytest.raises(ArtalignError, match="asks for no object"):
        item_correct(reading(), item("single_object", "a picture"))


def test_scores_and_figures_by_hand():
    readings = [
        reading(obj("star")),
        reading(obj("circle")),
        reading(obj("star", "blue")),
        reading(obj("star"), obj("heart", row=0)),
        reading(obj("star")),
    ]
    items = [SINGLE, SINGLE, SINGLE, COUNT, COUNT]
    scores = score_items(readings, items)
    assert scores["single_object"] == [1.0, 0.0, 1.0]
    assert scores["counting"] == [0.0, 0.0]
    # fidelity: SINGLE asks shape, colour, size, count, background, style (6 attributes);
    # reading 1 (medium red star): size wrong -> 5/6; reading 2 (medium red circle): colour,
    # count, background, style -> 4/6; reading 3 (medium blue star): shape and those -> 4/6
    assert scores["fidelity"][:3] == pytest.approx([5 / 6, 4 / 6, 4 / 6])
    figs = composition_figures(scores, n_boot=200, seed=0)
    assert figs["single_object"].value == pytest.approx(2 / 3)
    assert figs["counting"].value == 0.0 and figs["counting"].n == 2
    assert figs["overall"].value == pytest.approx((2 / 3 + 0.0) / 2)  # categories weigh alike
    assert figs["overall"].n == 5
    lo, hi = figs["overall"].ci
    # resampled within categories: counting stays 0, single_object ranges over {0, 1/3, 2/3, 1}
    assert 0.0 <= lo <= figs["overall"].value <= hi <= 0.5
    assert list(figs) == ["single_object", "counting", "fidelity", "overall"]
    with pytest.raises(ArtalignError, match="2 readings for 1 items"):
        score_items(readings[:2], items[:1])


def test_stratified_ci_by_hand():
    # constant groups: every resample has the same mean of means
    assert stratified_ci([[1.0, 1.0], [0.0, 0.0, 0.0]], n_boot=50) == (0.5, 0.5)
    lo, hi = stratified_ci([[0.0, 1.0], [1.0]], n_boot=2000, seed=1)
    # group 1 resamples to mean 0, 0.5 or 1 (1/4, 1/2, 1/4); the overall is (that + 1) / 2
    assert (lo, hi) == (0.5, 1.0)
    # the same with three agreeing seeds per prompt, resampled by prompt: the same interval;
    # resampled by image, group 1 looks like six independent draws and its interval narrows
    strata, groups = [[0.0] * 3 + [1.0] * 3, [1.0]], [["a"] * 3 + ["b"] * 3, ["c"]]
    assert stratified_ci(strata, n_boot=2000, seed=1, groups=groups) == (0.5, 1.0)
    lo_items, hi_items = stratified_ci(strata, n_boot=2000, seed=1)
    assert lo_items > 0.5 and hi_items < 1.0


def _samples(items, n_seeds=1, set_name="composition"):
    tagged = [{**i, "set": set_name} for i in items for _ in range(n_seeds)]
    torch.manual_seed(0)
    images = torch.rand(len(tagged), 3, 32, 32)
    return Samples(
        images, [i["prompt"] for i in tagged], list(range(len(tagged))), tagged, "m", seconds=2.0
    )


def test_metric_scores_the_oracle_readings(tiny_oracle_dir):
    samples = _samples(composition_set(n_per_category=2, seed=0))
    ctx = EvalContext(oracle_path=tiny_oracle_dir, n_boot=100)
    figs = get_metric("composition").fn(ctx, samples)
    assert get_metric("composition").aspect == "composition"
    assert set(figs) == {
        "single_object",
        "two_objects",
        "counting",
        "colours",
        "position",
        "colour_attribution",
        "heldout",
        "fidelity",
        "overall",
    }
    assert figs["counting"].n == 2 and figs["overall"].n == 14
    # the same readings scored directly give the same figures (the metric adds only plumbing)
    direct = composition_figures(
        score_items(read_images(ctx.oracle, samples.images), samples.items), 100, 0
    )
    assert {k: f.value for k, f in figs.items()} == {k: f.value for k, f in direct.items()}
    with pytest.raises(ArtalignError, match="'composition'"):
        composition(ctx, _samples([SINGLE], set_name="neutral"))


def test_efficiency_by_hand():
    figs = throughput(10, 2.0)
    assert figs["images_per_s"].value == 5.0 and figs["images_per_s"].higher_is_better
    assert figs["s_per_image"].value == 0.2 and figs["s_per_image"].higher_is_better is False
    assert figs["s_per_image"].n == 10 and figs["s_per_image"].ci is None
    samples = _samples([SINGLE, TWO], n_seeds=2)  # 4 images in 2.0 s
    assert efficiency(EvalContext(), samples)["images_per_s"].value == 2.0
    assert get_metric("efficiency").aspect == "efficiency"
    with pytest.raises(ArtalignError, match="wall time"):
        throughput(4, 0.0)
    with pytest.raises(ArtalignError, match="drop `on`"):
        efficiency(EvalContext(), samples, on="composition")


def test_metric_resamples_prompts_with_all_their_seeds(tiny_oracle_dir):
    samples = _samples(composition_set(n_per_category=2, seed=0), n_seeds=3)
    ctx = EvalContext(oracle_path=tiny_oracle_dir, n_boot=100)
    figs = composition(ctx, samples)
    scores = score_items(read_images(ctx.oracle, samples.images), samples.items)
    groups = score_groups(samples.items, samples.prompts)
    assert (figs["counting"].n, figs["counting"].n_clusters) == (6, 2)
    for key in ("counting", "fidelity"):
        assert figs[key].ci == bootstrap_ci(scores[key], n_boot=100, groups=groups[key])
    assert figs["fidelity"].n_clusters == 14 and figs["overall"].n_clusters == 14
    cats = [c for c in figs if c not in ("fidelity", "overall")]
    strata, by_prompt = [scores[c] for c in cats], [groups[c] for c in cats]
    assert figs["overall"].ci == stratified_ci(strata, n_boot=100, groups=by_prompt)
    with pytest.raises(ArtalignError, match="2 prompts for 3 items"):
        score_groups(samples.items[:3], samples.prompts[:2])
