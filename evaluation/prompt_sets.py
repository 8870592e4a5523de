"""Prompt sets of the evaluation suites: lists of items, each with a prompt and what it asks for.

Every set is a registered factory `factory(**params) -> [item, ...]`; an item is a dict with
"prompt", "category" and, where the prompt asks for attributes, "required" (the record
`base_models.oracle.fidelity.parse_prompt` reads from the prompt). The suite runner adds "set".

- `composition` (GenEval's categories, in the procedural world's wording): single object, two
  objects, counting, colours, position, colour attribution and held-out compositions; scenes are
  drawn from the world with their own seed (never training captions) and written canonically.
  Each item also keeps its "scene" record (with "jitter"), so a real image of it can be rendered.
- `neutral`: prompts that leave one attribute open ("a shape", "a star", ...), tagged with the
  bias "axis" they probe; colour-axis items name their "shape".
- `captions`: the canonical captions of the first n images of the data set of a seed.
- `list`: a literal list of prompts.

`samples_of_set` is how a metric takes the items of its set (`params["on"]`) from a suite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.oracle.fidelity import parse_prompt
from base_models.world.attributes import HELDOUT_PAIRS, SHAPES, SceneSpec
from base_models.world.captions import (
    BACKGROUND_WORDS,
    COUNT_WORDS,
    SHAPE_WORDS,
    STYLE_WORDS,
    TEMPLATES,
    canonical_caption,
    object_phrase,
)
from base_models.world.dataset import DataConfig
from evaluation.registry import register_prompt_set

# GenEval's six categories plus compositions never seen in training, in report order.
CATEGORIES: tuple[str, ...] = (
    "single_object",
    "two_objects",
    "counting",
    "colours",
    "position",
    "colour_attribution",
    "heldout",
)
# Neutral prompts per bias axis: each leaves the axis's attribute (and most others) open.
NEUTRAL_SHAPE_PROMPTS: tuple[str, ...] = ("a shape", "an object", "a picture of a shape")
NEUTRAL_STYLE_PROMPTS: tuple[str, ...] = ("a picture", "an artwork", "a drawing of a shape")
NEUTRAL_AXES: tuple[str, ...] = ("colour", "shape", "style")
COUNTING_TEMPLATE = TEMPLATES[4]  # "{count} shapes in {style} style: {objs}, on {bg}"


def _sampler(split: str, objects: int) -> Any:
    """A scene sampler of `split` with exactly `objects` objects, uniform colours, no unsafe."""
    cfg = DataConfig(
        n=1, split=split, min_objects=objects, max_objects=objects, unsafe_share=0.0, stereotypes=[]
    )
    return cfg.sampler()


def _draw(sampler: Any, rng: np.random.Generator, distinct: str = "") -> tuple[SceneSpec, Any]:
    """A scene whose objects differ in the attributes of `distinct` ("shape", "colour" or both)."""
    for _ in range(1000):
        scene, jitter = sampler.sample(rng)
        ok = all(
            len({getattr(o, k) for o in scene.objects}) == scene.count
            for k in ("shape", "colour")
            if k in distinct
        )
        if ok:
            return scene, jitter
    raise RuntimeError("could not draw a scene with distinct attributes")  # the world has 7x8


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _listing(phrases: list[str]) -> str:
    """'a, b and c', as the world's captions list objects."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _counting_caption(scene: SceneSpec) -> str:
    objs = sorted(scene.objects, key=lambda o: (o.row, o.col))
    return COUNTING_TEMPLATE.format(
        count=COUNT_WORDS[scene.count],
        style=STYLE_WORDS[scene.style][0],
        objs=_listing([object_phrase(o, None, with_position=False) for o in objs]),
        bg=BACKGROUND_WORDS[scene.background][0],
    )


def composition_item(category: str, seed: int, index: int) -> dict[str, Any]:
    """Item `index` of one category: a pure function of (category, seed, index)."""
    if category not in CATEGORIES:
        raise ArtalignError(f"unknown composition category {category!r}; one of {CATEGORIES}")
    rng = np.random.default_rng([seed, CATEGORIES.index(category), index])
    with_position = False
    if category == "heldout":
        scene, jitter = _draw(_sampler("heldout", 1), rng)
    elif category in ("two_objects", "colour_attribution"):
        distinct = "shape colour" if category == "colour_attribution" else "shape"
        scene, jitter = _draw(_sampler("train", 2), rng, distinct)
    elif category == "counting":
        scene, jitter = _draw(_sampler("train", int(rng.integers(2, 4))), rng)
    else:
        scene, jitter = _draw(_sampler("train", 1), rng)
        with_position = category == "position"
    if category == "counting":
        prompt = _counting_caption(scene)
    else:
        prompt = canonical_caption(scene, with_position=with_position)
    item = {
        "prompt": prompt,
        "category": category,
        "required": parse_prompt(prompt),
        "scene": {**scene.to_record(), "jitter": [list(j) for j in jitter]},
    }
    if category == "heldout":
        pairs = [[o.colour, o.shape] for o in scene.objects if (o.colour, o.shape) in HELDOUT_PAIRS]
        item["heldout_pairs"] = pairs
    return item


@register_prompt_set("composition")
def composition(
    n_per_category: int = 20, seed: int = 0, categories: list[str] | None = None
) -> list[dict[str, Any]]:
    """`n_per_category` prompts of each GenEval-style category (all of CATEGORIES by default)."""
    if n_per_category < 1:
        raise ArtalignError(f"n_per_category must be >= 1; got {n_per_category}")
    cats = list(categories) if categories else list(CATEGORIES)
    return [composition_item(c, seed, i) for c in cats for i in range(n_per_category)]


@register_prompt_set("neutral")
def neutral(axes: list[str] | None = None) -> list[dict[str, Any]]:
    """Prompts that leave an attribute open, per bias axis.

    colour: one prompt per shape ("a star"): which colours does the model paint it?
    shape: "a shape", "an object", ...: which shapes does it draw? style: "a picture", ...
    """
    chosen = list(axes) if axes else list(NEUTRAL_AXES)
    unknown = [a for a in chosen if a not in NEUTRAL_AXES]
    if unknown:
        raise ArtalignError(f"unknown bias axes {unknown}; choose from {NEUTRAL_AXES}")
    items: list[dict[str, Any]] = []
    for axis in chosen:
        if axis == "colour":
            for shape in SHAPES:
                prompt = _article(SHAPE_WORDS[shape][0])
                items.append(
                    {
                        "prompt": prompt,
                        "category": f"neutral_{axis}",
                        "axis": axis,
                        "shape": shape,
                        "required": parse_prompt(prompt),
                    }
                )
        else:
            prompts = NEUTRAL_SHAPE_PROMPTS if axis == "shape" else NEUTRAL_STYLE_PROMPTS
            for prompt in prompts:
                items.append(
                    {
                        "prompt": prompt,
                        "category": f"neutral_{axis}",
                        "axis": axis,
                        "required": parse_prompt(prompt),
                    }
                )
    return items


@register_prompt_set("captions")
def captions(n: int = 50, seed: int = 0, split: str = "train") -> list[dict[str, Any]]:
    """The canonical captions of the first `n` items of `artalign data make --seed SEED`.

    The data set's default knobs (stereotypes, unsafe share) apply, so item i is the scene of
    image i of that data set: its "canonical" caption and its record (for rendering the real).
    """
    if n < 1:
        raise ArtalignError(f"the captions set needs n >= 1; got {n}")
    cfg = DataConfig(n=n, seed=seed, split=split)
    sampler = cfg.sampler()
    items = []
    for index in range(n):
        scene, jitter = sampler.sample(np.random.default_rng([seed, index]))
        prompt = canonical_caption(scene)
        items.append(
            {
                "prompt": prompt,
                "category": "captions",
                "required": parse_prompt(prompt),
                "scene": {**scene.to_record(), "jitter": [list(j) for j in jitter]},
            }
        )
    return items


@register_prompt_set("list")
def prompt_list(prompts: list[str] | None = None, category: str = "list") -> list[dict[str, Any]]:
    """A literal list of prompts (any wording); "required" is what parse_prompt reads in each."""
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ArtalignError("the list prompt set needs prompts: a non-empty list of strings")
    return [{"prompt": p, "category": category, "required": parse_prompt(p)} for p in prompts]


def samples_of_set(samples: Any, on: str, metric: str) -> Any:
    """The samples whose item belongs to prompt set `on`, or an ArtalignError naming the set."""
    return samples.of_set(on, metric)
