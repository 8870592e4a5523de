"""Procedural stand-ins for generated images: a scene that matches a prompt, or misses it once.

`scene_for_prompt` reads the prompt back into attributes with the oracle's parser
(`parse_prompt`), fills in what the prompt leaves open at random and, with `mistake`, changes
one asked-for attribute (a colour, shape, size, position, background, style, or drops an
object), so a batch made without a trained generator still holds better and worse images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from base_models.world.attributes import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    GRID,
    MAX_OBJECTS,
    POSITION_NAMES,
    SHAPES,
    SIZE_NAMES,
    STYLES,
    ObjectSpec,
    SceneSpec,
)
from base_models.world.sampling import MAX_JITTER


def _pick(rng: np.random.Generator, values, avoid=None) -> str:
    choices = [v for v in values if v != avoid]
    return str(choices[int(rng.integers(len(choices)))])


def _cell_for(want: dict[str, Any], free: list[int], rng: np.random.Generator) -> int:
    """A free grid cell that honours the asked-for position, row or column when possible."""
    if "position" in want and POSITION_NAMES.index(want["position"]) in free:
        return POSITION_NAMES.index(want["position"])
    ok = [
        c
        for c in free
        if want.get("row", c // GRID) == c // GRID and want.get("col", c % GRID) == c % GRID
    ]
    pool = ok or free
    return int(pool[int(rng.integers(len(pool)))])


def _mistake(required: dict[str, Any], objects: list[dict], rng) -> str | None:
    """Change one asked-for attribute in place (in `required`/`objects`); say which."""
    options: list[tuple] = []
    options += [(key,) for key in ("background", "style") if key in required]
    for i, obj in enumerate(objects):
        options += [(key, i) for key in ("shape", "colour", "size", "position") if key in obj]
    if len(objects) > 1:
        options.append(("drop", int(rng.integers(len(objects)))))
    if not options:
        return None
    choice = options[int(rng.integers(len(options)))]
    if choice[0] == "background":
        required["background"] = _pick(rng, BACKGROUND_NAMES, required["background"])
    elif choice[0] == "style":
        required["style"] = _pick(rng, STYLES, required["style"])
    elif choice[0] == "drop":
        objects.pop(choice[1])
        return f"dropped object {choice[1]}"
    else:
        key, i = choice
        values = {
            "shape": SHAPES,
            "colour": COLOUR_NAMES,
            "size": SIZE_NAMES,
            "position": POSITION_NAMES,
        }[key]
        objects[i][key] = _pick(rng, values, objects[i][key])
        return f"{key} of object {i}"
    return choice[0]


def scene_for_prompt(
    text: str, rng: np.random.Generator, mistake: bool = False
) -> tuple[SceneSpec, tuple[tuple[float, float], ...], str | None]:
    """A scene for `text`, its jitter, and the mistake made (None if it matches the prompt)."""
    # lazy: torch (base_models.oracle's __init__ loads the model), kept out of `artalign --help`
    from base_models.oracle.fidelity import parse_prompt

    required = parse_prompt(text)
    objects = [dict(o) for o in required.get("objects", [])][:MAX_OBJECTS]
    want = required.get("count", len(objects) or int(rng.integers(1, MAX_OBJECTS + 1)))
    while len(objects) < min(max(want, 1), MAX_OBJECTS):
        objects.append({})
    changed = _mistake(required, objects, rng) if mistake else None
    free = list(range(GRID * GRID))
    specs = []
    for obj in objects:
        cell = _cell_for(obj, free, rng)
        free.remove(cell)
        specs.append(
            ObjectSpec(
                shape=obj.get("shape") or _pick(rng, SHAPES),
                colour=obj.get("colour") or _pick(rng, COLOUR_NAMES),
                size=obj.get("size") or _pick(rng, SIZE_NAMES),
                row=cell // GRID,
                col=cell % GRID,
            )
        )
    scene = SceneSpec(
        objects=specs,
        background=required.get("background") or _pick(rng, BACKGROUND_NAMES),
        style=required.get("style") or _pick(rng, STYLES),
    )
    offsets = rng.uniform(-MAX_JITTER, MAX_JITTER, size=(len(specs), 2))
    return scene, tuple((float(x), float(y)) for x, y in offsets), changed
