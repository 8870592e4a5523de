"""Prompt sets: GenEval-style composition items, neutral prompts, captions of a seed, a list."""

from __future__ import annotations

import json

import pytest
import torch

from base_models.errors import ArtalignError
from base_models.oracle.fidelity import parse_prompt
from base_models.world.attributes import HELDOUT_PAIRS, SHAPES
from evaluation.context import Samples
from evaluation.prompt_sets import (
    CATEGORIES,
    captions,
    composition,
    neutral,
    prompt_list,
    samples_of_set,
)
from evaluation.registry import get_prompt_set


def _by_category(items):
    out = {}
    for item in items:
        out.setdefault(item["category"], []).append(item)
    return out


def test_composition_has_every_category_and_is_reproducible():
    items = composition(n_per_category=4, seed=3)
    groups = _by_category(items)
    assert list(groups) == list(CATEGORIES)
    assert all(len(g) == 4 for g in groups.values())
    assert items == composition(n_per_category=4, seed=3)
    assert [i["prompt"] for i in items] != [i["prompt"] for i in composition(4, seed=4)]
    assert get_prompt_set("composition") is composition


def test_composition_items_ask_for_their_scene():
    for item in composition(n_per_category=6, seed=1):
        assert item["required"] == parse_prompt(item["prompt"])
        scene = item["scene"]
        asked = sorted((o["shape"], o["colour"], o["size"]) for o in item["required"]["objects"])
        truth = sorted((o["shape"], o["colour"], o["size"]) for o in scene["objects"])
        assert asked == truth, item["prompt"]
        assert item["required"]["count"] == scene["count"]
        assert len(scene["jitter"]) == scene["count"]


def test_composition_categories_follow_geneval():
    groups = _by_category(composition(n_per_category=8, seed=2))
    for cat in ("single_object", "colours", "position", "heldout"):
        assert all(i["scene"]["count"] == 1 for i in groups[cat])
    for item in groups["two_objects"] + groups["colour_attribution"]:
        shapes = [o["shape"] for o in item["scene"]["objects"]]
        assert len(shapes) == 2 and len(set(shapes)) == 2
    for item in groups["colour_attribution"]:
        assert len({o["colour"] for o in item["scene"]["objects"]}) == 2
    for item in groups["counting"]:
        assert item["required"]["count"] in (2, 3)
        assert item["prompt"].startswith(("two shapes", "three shapes"))
    for item in groups["position"]:
        (obj,) = item["required"]["objects"]
        assert obj["position"] == item["scene"]["objects"][0]["position"]
    for item in groups["heldout"]:
        (obj,) = item["scene"]["objects"]
        assert (obj["colour"], obj["shape"]) in HELDOUT_PAIRS
        assert item["heldout_pairs"] == [[obj["colour"], obj["shape"]]]
    # the other categories are drawn from the train split: no held-out composition in them
    for cat in set(CATEGORIES) - {"heldout"}:
        for item in groups[cat]:
            assert all(
                (o["colour"], o["shape"]) not in HELDOUT_PAIRS for o in item["scene"]["objects"]
            )


def test_composition_rejects_bad_params():
    with pytest.raises(ArtalignError, match="n_per_category"):
        composition(n_per_category=0)
    with pytest.raises(ArtalignError, match="unknown composition category"):
        composition(n_per_category=1, categories=["colors"])
    assert {i["category"] for i in composition(2, categories=["counting"])} == {"counting"}


def test_neutral_prompts_leave_their_axis_open():
    items = neutral()
    axes = _by_category(items)
    assert set(axes) == {"neutral_colour", "neutral_shape", "neutral_style"}
    colour = [i for i in items if i["axis"] == "colour"]
    assert [i["shape"] for i in colour] == list(SHAPES)
    assert [i["prompt"] for i in colour][:4] == ["a circle", "a square", "a triangle", "a star"]
    for item in colour:  # names its shape, no colour
        assert item["required"]["objects"] == [{"shape": item["shape"]}]
    for item in items:
        if item["axis"] != "colour":  # names nothing at all
            assert item["required"] == {}
    assert {i["axis"] for i in neutral(axes=["style"])} == {"style"}
    with pytest.raises(ArtalignError, match="unknown bias axes"):
        neutral(axes=["gender"])


def test_captions_are_the_canonical_captions_of_the_data_set(micro_data):
    records = [
        json.loads(line) for line in (micro_data / "metadata.jsonl").read_text().split("\n") if line
    ]
    items = captions(n=5, seed=3)  # micro_data is DataConfig(n=16, seed=3)
    assert [i["prompt"] for i in items] == [r["canonical"] for r in records[:5]]
    assert [i["scene"]["jitter"] for i in items] == [r["jitter"] for r in records[:5]]
    with pytest.raises(ArtalignError, match="n >= 1"):
        captions(n=0)


def test_list_set_and_selecting_a_set():
    items = prompt_list(prompts=["a red star", "a photo of a dog"], category="mine")
    assert items[0] == {
        "prompt": "a red star",
        "category": "mine",
        "required": {"objects": [{"colour": "red", "shape": "star"}], "count": 1},
    }
    assert items[1]["required"] == {}
    with pytest.raises(ArtalignError, match="non-empty list"):
        prompt_list(prompts=[])

    tagged = [{**i, "set": "list"} for i in items] + [{"prompt": "x", "set": "neutral"}]
    samples = Samples(torch.zeros(3, 3, 4, 4), ["a", "b", "c"], [0, 1, 2], tagged)
    assert samples_of_set(samples, "list", "m").prompts == ["a", "b"]
    with pytest.raises(ArtalignError, match="'composition'.*list, neutral"):
        samples_of_set(samples, "composition", "m")
