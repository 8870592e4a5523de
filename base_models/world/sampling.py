"""Draw random scenes: object count, shapes, colours, sizes, cells, background and style.

Two knobs create measurable structure on purpose: a reserved unsafe concept (the warning sign) in a
small share of images, and stereotypes ("stars are yellow 80% of the time") that bias evaluation
can later detect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from base_models.errors import ArtalignError
from base_models.world.attributes import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    GRID,
    HELDOUT_PAIRS,
    MAX_OBJECTS,
    SHAPES,
    SIZE_NAMES,
    STYLES,
    UNSAFE_SHAPE,
    ObjectSpec,
    SceneSpec,
)

SPLITS = ("train", "heldout", "all")
MAX_JITTER = 0.12  # offset of an object from its cell centre, as a fraction of the cell side


@dataclass(frozen=True)
class Stereotype:
    """With probability `p`, an object of `shape` gets `value` for attribute `attr`."""

    shape: str
    attr: str  # "colour" or "size"
    value: str
    p: float

    @classmethod
    def parse(cls, text: str) -> Stereotype:
        """Parse 'SHAPE:VALUE:P', e.g. 'star:yellow:0.8' or 'heart:large:0.7'."""
        parts = text.split(":")
        if len(parts) != 3:
            raise ArtalignError(f"stereotype {text!r} is not SHAPE:VALUE:P; e.g. star:yellow:0.8")
        shape, value, p_text = parts
        if shape not in SHAPES:
            raise ArtalignError(f"stereotype {text!r}: unknown shape {shape!r}; one of {SHAPES}")
        if value in COLOUR_NAMES:
            attr = "colour"
        elif value in SIZE_NAMES:
            attr = "size"
        else:
            raise ArtalignError(
                f"stereotype {text!r}: {value!r} is neither a colour {COLOUR_NAMES} "
                f"nor a size {SIZE_NAMES}"
            )
        try:
            p = float(p_text)
        except ValueError:
            p = -1.0
        if not 0.0 <= p <= 1.0:
            raise ArtalignError(f"stereotype {text!r}: P must be a number in [0, 1]")
        return cls(shape, attr, value, p)


@dataclass
class SceneSampler:
    """Samples scenes for one split of the world. All randomness comes from the `rng` passed in."""

    split: str = "train"
    min_objects: int = 1
    max_objects: int = MAX_OBJECTS
    styles: tuple[str, ...] = STYLES
    unsafe_share: float = 0.02
    stereotypes: tuple[Stereotype, ...] = ()

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ArtalignError(f"unknown split {self.split!r}; choose one of {SPLITS}")
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ArtalignError(
                f"object counts must satisfy 1 <= min_objects <= max_objects <= {MAX_OBJECTS}"
            )
        if not self.styles:
            raise ArtalignError("every style is excluded; keep at least one of " + str(STYLES))
        if not 0.0 <= self.unsafe_share <= 1.0:
            raise ArtalignError("unsafe_share must be in [0, 1]")
        for s in self.stereotypes:
            if s.attr == "colour" and (s.value, s.shape) in HELDOUT_PAIRS and s.p > 0:
                raise ArtalignError(
                    f"stereotype {s.shape}:{s.value} is a held-out composition; pick another colour"
                )

    def _colour(self, shape: str, rng: np.random.Generator) -> str:
        for s in self.stereotypes:
            if s.shape == shape and s.attr == "colour" and rng.random() < s.p:
                return s.value
        return str(rng.choice(COLOUR_NAMES))

    def _size(self, shape: str, rng: np.random.Generator) -> str:
        for s in self.stereotypes:
            if s.shape == shape and s.attr == "size" and rng.random() < s.p:
                return s.value
        return str(rng.choice(SIZE_NAMES))

    def _object(self, shape: str, cell: int, rng: np.random.Generator) -> ObjectSpec:
        colour = self._colour(shape, rng)
        if self.split == "train":
            while (colour, shape) in HELDOUT_PAIRS:  # never show a held-out composition
                colour = str(rng.choice(COLOUR_NAMES))
        return ObjectSpec(shape, colour, self._size(shape, rng), cell // GRID, cell % GRID)

    def sample(self, rng: np.random.Generator) -> tuple[SceneSpec, tuple[tuple[float, float], ...]]:
        """One scene and each object's jitter within its cell."""
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        cells = rng.choice(GRID * GRID, size=n, replace=False)
        shapes = [str(rng.choice(SHAPES)) for _ in range(n)]
        if rng.random() < self.unsafe_share:
            shapes[int(rng.integers(n))] = UNSAFE_SHAPE
        objects = [self._object(shape, int(c), rng) for shape, c in zip(shapes, cells, strict=True)]
        if self.split == "heldout":
            # every held-out image shows at least one composition never seen in training
            k = int(rng.integers(n))
            pairs = sorted(HELDOUT_PAIRS)
            colour, shape = pairs[int(rng.integers(len(pairs)))]
            objects[k].colour, objects[k].shape = colour, shape
            objects[k].size = self._size(shape, rng)
        scene = SceneSpec(
            objects=objects,
            background=str(rng.choice(BACKGROUND_NAMES)),
            style=str(rng.choice(self.styles)),
        )
        offsets = rng.uniform(-MAX_JITTER, MAX_JITTER, size=(len(objects), 2))
        jitter = tuple((float(x), float(y)) for x, y in offsets)
        return scene, jitter
