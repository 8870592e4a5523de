"""Captions for scenes: several templates and synonyms, so one scene has many valid captions.

`caption` draws a varied training caption; `canonical_caption` gives the one fixed wording used for
prompt sets and evaluation, so a prompt means the same thing every time it is used.
"""

from __future__ import annotations

import numpy as np

from base_models.world.attributes import ObjectSpec, SceneSpec

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus"),
    "warning": ("warning sign", "hazard sign"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "cyan": ("cyan", "turquoise"),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink",),
}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "white": ("white",),
    "black": ("black",),
    "gray": ("gray", "grey"),
    "beige": ("beige", "sand-coloured"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium-sized"),
    "large": ("large", "big"),
}
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "flat": ("flat", "plain"),
    "outlined": ("outlined", "outline"),
    "striped": ("striped",),
    "dotted": ("dotted", "polka-dot"),
    "gradient": ("gradient", "shaded"),
}
COUNT_WORDS = ("zero", "one", "two", "three")

# Templates of the whole caption. {objs}: the object list; {bg}: background word; {style}: style.
TEMPLATES: tuple[str, ...] = (
    "{objs} on a {bg} background, {style} style",
    "{a_style} picture of {objs} on {bg}",
    "{style} art: {objs}, {bg} background",
    "{objs} against a {bg} backdrop in {style} style",
    "{count} shapes in {style} style: {objs}, on {bg}",
)
CANONICAL_TEMPLATE = TEMPLATES[0]


def _pick(rng: np.random.Generator | None, words: tuple[str, ...]) -> str:
    return words[0] if rng is None else words[int(rng.integers(len(words)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def object_phrase(
    obj: ObjectSpec, rng: np.random.Generator | None = None, with_position: bool = True
) -> str:
    """'a large red circle in the top left' (words drawn from the synonym lists when rng given)."""
    words = [_pick(rng, SIZE_WORDS[obj.size]), _pick(rng, COLOUR_WORDS[obj.colour])]
    phrase = _article(" ".join(words + [_pick(rng, SHAPE_WORDS[obj.shape])]))
    if with_position:
        pos = obj.position
        phrase += " in the center" if pos == "center" else f" in the {pos}"
    return phrase


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """A varied caption: random template, synonyms, object order, and positions 60% of the time."""
    with_position = bool(rng.random() < 0.6)
    order = rng.permutation(len(scene.objects))
    objs = _join([object_phrase(scene.objects[i], rng, with_position) for i in order])
    templates = TEMPLATES if scene.count > 1 else TEMPLATES[:-1]
    template = templates[int(rng.integers(len(templates)))]
    style = _pick(rng, STYLE_WORDS[scene.style])
    return template.format(
        objs=objs,
        bg=_pick(rng, BACKGROUND_WORDS[scene.background]),
        style=style,
        a_style=_article(style),
        count=COUNT_WORDS[scene.count],
    )


def canonical_caption(scene: SceneSpec, with_position: bool = True) -> str:
    """The fixed wording of a scene: first synonyms, objects in reading order, template 0."""
    objs = sorted(scene.objects, key=lambda o: (o.row, o.col))
    return CANONICAL_TEMPLATE.format(
        objs=_join([object_phrase(o, None, with_position) for o in objs]),
        bg=BACKGROUND_WORDS[scene.background][0],
        style=STYLE_WORDS[scene.style][0],
    )
