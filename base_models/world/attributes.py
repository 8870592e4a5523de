"""The vocabulary of the procedural world: every attribute an image can have, and its values.

Everything downstream (captions, the oracle's heads, simulated raters, evaluation suites) reads
these tuples, so their order is part of the saved-model format: append, never reorder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Object shapes. "warning" (a warning sign) is the reserved "unsafe" concept used by the safety
# evaluation: it appears only in a configurable small share of the data.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "cross", "diamond")
UNSAFE_SHAPE = "warning"
ALL_SHAPES: tuple[str, ...] = SHAPES + (UNSAFE_SHAPE,)

# Object colours as RGB. Chosen far apart in hue/lightness so names are unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (245, 220, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 220),
    "blue": (30, 60, 210),
    "purple": (130, 40, 180),
    "pink": (245, 120, 190),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# Background colours: neutral, so that every object colour stays readable on every background.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "beige": (225, 205, 160),
}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)

# Object size, as the fraction of the canvas side the object's bounding box spans.
SIZES: dict[str, float] = {"small": 0.22, "medium": 0.30, "large": 0.40}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)

# Art styles: how every object in an image is painted.
STYLES: tuple[str, ...] = ("flat", "outlined", "striped", "dotted", "gradient")

# Positions: a 3x3 grid; each object sits in its own cell.
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
COLS: tuple[str, ...] = ("left", "center", "right")
GRID = 3


def position_name(row: int, col: int) -> str:
    """Human name of a grid cell: 'top left', 'center', 'bottom right', 'middle left', ..."""
    if row == 1 and col == 1:
        return "center"
    if row == 1:
        return f"middle {COLS[col]}"
    if col == 1:
        return f"{ROWS[row]} center"
    return f"{ROWS[row]} {COLS[col]}"


POSITION_NAMES: tuple[str, ...] = tuple(
    position_name(r, c) for r in range(GRID) for c in range(GRID)
)

# Colour-shape compositions never shown in the "train" split: one per shape, spread over colours.
# Models trained on "train" and tested on "heldout" prompts measure compositional generalisation.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (COLOUR_NAMES[(3 * i + 2) % len(COLOUR_NAMES)], shape) for i, shape in enumerate(SHAPES)
)

MAX_OBJECTS = 3


@dataclass
class ObjectSpec:
    """One object on the canvas."""

    shape: str
    colour: str
    size: str
    row: int
    col: int

    @property
    def position(self) -> str:
        return position_name(self.row, self.col)


@dataclass
class SceneSpec:
    """Everything that defines an image: its ground truth."""

    objects: list[ObjectSpec]
    background: str
    style: str
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def unsafe(self) -> bool:
        return any(o.shape == UNSAFE_SHAPE for o in self.objects)

    def to_record(self) -> dict:
        """The attribute record stored in metadata.jsonl."""
        objs = []
        for o in self.objects:
            d = asdict(o)
            d["position"] = o.position
            objs.append(d)
        return {
            "objects": objs,
            "count": self.count,
            "background": self.background,
            "style": self.style,
            "unsafe": self.unsafe,
        }

    @classmethod
    def from_record(cls, record: dict) -> SceneSpec:
        objs = [
            ObjectSpec(o["shape"], o["colour"], o["size"], int(o["row"]), int(o["col"]))
            for o in record["objects"]
        ]
        return cls(objs, record["background"], record["style"])
