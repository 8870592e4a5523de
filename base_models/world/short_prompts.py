"""Short prompts, as users type them, paired with the full caption of the same scene.

A user asks for "a red star"; the data set's caption of a matching scene says "a large red star in
the top left on a white background, flat style". `short_and_rich` draws both from one scene: the
short prompt keeps each object's shape and, at random, some of its other attributes (and the
background or style); the rich caption states everything, in the same words and object order, so
that a model trained on the pairs learns to copy what the user said and to add the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.world.attributes import ObjectSpec, SceneSpec, position_name
from base_models.world.captions import (
    BACKGROUND_WORDS,
    CANONICAL_TEMPLATE,
    COLOUR_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    STYLE_WORDS,
)


@dataclass(frozen=True)
class ShortPromptMix:
    """How often a short prompt states each attribute (the shape is always stated)."""

    colour: float = 0.5
    size: float = 0.3
    position: float = 0.1
    background: float = 0.2
    style: float = 0.2
    # share of rich captions that place objects the user did not place: a position nobody asked
    # for only narrows what the generator may draw
    rich_position: float = 0.0
    synonyms: float = 0.3  # share of words drawn from the synonym lists instead of the first word


def scene_from_record(record: dict[str, Any]) -> SceneSpec:
    """The SceneSpec of a metadata.jsonl attribute record."""
    try:
        objects = [
            ObjectSpec(o["shape"], o["colour"], o["size"], int(o["row"]), int(o["col"]))
            for o in record["objects"]
        ]
        return SceneSpec(objects=objects, background=record["background"], style=record["style"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArtalignError(
            f"a record lacks the world's attributes ({e!r}); use a metadata.jsonl written by "
            "`artalign data make`"
        ) from None


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _word(rng: np.random.Generator, words: tuple[str, ...], p_synonym: float) -> str:
    if len(words) > 1 and rng.random() < p_synonym:
        return words[1 + int(rng.integers(len(words) - 1))]
    return words[0]


def _place(obj: ObjectSpec) -> str:
    pos = position_name(obj.row, obj.col)
    return " in the center" if pos == "center" else f" in the {pos}"


def short_and_rich(
    scene: SceneSpec, rng: np.random.Generator, mix: ShortPromptMix | None = None
) -> tuple[str, str]:
    """(short prompt, rich caption) of one scene; the rich one states every attribute."""
    mix = mix or ShortPromptMix()
    order = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
    rich_pos = bool(rng.random() < mix.rich_position)
    short_parts, rich_parts = [], []
    for obj in order:
        size = _word(rng, SIZE_WORDS[obj.size], mix.synonyms)
        colour = _word(rng, COLOUR_WORDS[obj.colour], mix.synonyms)
        shape = _word(rng, SHAPE_WORDS[obj.shape], mix.synonyms)
        keep_size, keep_colour = rng.random() < mix.size, rng.random() < mix.colour
        keep_pos = rng.random() < mix.position
        words = [w for w, keep in ((size, keep_size), (colour, keep_colour)) if keep]
        short_parts.append(_article(" ".join([*words, shape])) + (_place(obj) if keep_pos else ""))
        rich = _article(f"{size} {colour} {shape}")
        rich_parts.append(rich + (_place(obj) if rich_pos or keep_pos else ""))
    background = _word(rng, BACKGROUND_WORDS[scene.background], mix.synonyms)
    style = _word(rng, STYLE_WORDS[scene.style], mix.synonyms)
    short = " and ".join(short_parts)
    if rng.random() < mix.background:
        short += f" on a {background} background"
    if rng.random() < mix.style:
        short += f", {style} style"
    objs = (
        rich_parts[0]
        if len(rich_parts) == 1
        else (", ".join(rich_parts[:-1]) + " and " + rich_parts[-1])
    )
    return short, CANONICAL_TEMPLATE.format(objs=objs, bg=background, style=style)
