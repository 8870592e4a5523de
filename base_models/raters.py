"""Simulated raters: a profile (YAML), a hidden utility per image, and noisy answers.

A simulated rater prefers images by a hidden utility that is a pure function of the oracle's
reading of the image and of the prompt, an expectation under the oracle's doubt:

    u = fidelity_weight * expected_fidelity(reading, parse_prompt(prompt)) + taste(reading)

where expected fidelity is the expected share of the prompt's attributes the image shows (0..1;
a blob the oracle calls a circle with probability 0.4 earns 0.4 of a circle's credit, see
`base_models.oracle.expected`) and taste adds the expected weight of what the image shows
(style, background, and averaged over its objects: shape, colour, size, position, row, column and
colour warmth). A plain record (no distributions) is read as certain. Answers are noisy: a pair
is chosen by Bradley-Terry, P(left) = sigmoid((u_left - u_right) / temperature), and a k-way
ranking by Plackett-Luce, picking the best of the remaining images one at a time with
probabilities softmax(u / temperature). Near-equal images may be called a tie; a pair of images
that both miss the prompt (`both_bad_below`) or are both illegible (`illegible_below`, on
`legibility`) may be called "both bad"; spammers ignore the images (a fair coin for pairs, a
uniformly random order for rankings).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from base_models.config import BaseConfig, hfield, load_config
from base_models.errors import ArtalignError
from base_models.oracle.expected import as_record, expected_fidelity, p_value
from base_models.oracle.fidelity import parse_prompt
from base_models.oracle.reading import OracleReading
from base_models.world.attributes import (
    ALL_SHAPES,
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    COLS,
    POSITION_NAMES,
    ROWS,
    SIZE_NAMES,
    STYLES,
    position_name,
)

WARM_COLOURS: frozenset[str] = frozenset({"red", "orange", "yellow", "pink"})
COOL_COLOURS: frozenset[str] = frozenset(COLOUR_NAMES) - WARM_COLOURS
# taste tables: profile field -> the values it may weigh
TASTE_KEYS: dict[str, tuple[str, ...]] = {
    "style": STYLES,
    "background": BACKGROUND_NAMES,
    "shape": ALL_SHAPES,
    "colour": COLOUR_NAMES,
    "size": SIZE_NAMES,
    "position": POSITION_NAMES,
    "row": ROWS,
    "col": COLS,
}
SPAMMER_PAIR: dict[str, float] = {"left": 0.5, "right": 0.5, "tie": 0.0, "both_bad": 0.0}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass
class RaterProfile(BaseConfig):
    """A population of simulated raters: how many, how noisy, what they value.

    Noise: temperature, tie_margin / tie_prob, both_bad_below / both_bad_prob, spammer_share.
    Utility: fidelity_weight plus taste weights (a missing value weighs 0). Utilities are in
    fidelity units: an image that satisfies one more of a prompt's four attributes gains 0.25.
    """

    name: str = hfield("", "Profile name; accounts are sim-<name>-<i> (default: the file stem).")
    n_raters: int = hfield(5, "Number of simulated rater accounts.")
    temperature: float = hfield(0.1, "Bradley-Terry / Plackett-Luce temperature (> 0).")
    spammer_share: float = hfield(0.0, "Share of raters who answer at random (0-1).")
    tie_margin: float = hfield(0.0, "Utility gap below which a rater may call a tie (0: never).")
    tie_prob: float = hfield(0.5, "Probability of a tie when the gap is below tie_margin.")
    both_bad_below: float | None = hfield(
        None, "Pairs whose both utilities are below this may be called both_bad (null: never)."
    )
    illegible_below: float | None = hfield(
        None,
        "Pairs whose both images have legibility below this (0-1: how clearly the oracle reads "
        "their shapes and colours) may be called both_bad (null: never).",
    )
    both_bad_prob: float = hfield(0.5, "Probability of both_bad when both are below a bar.")
    fidelity_weight: float = hfield(1.0, "Weight of prompt fidelity (0-1) in the utility.")
    style: dict[str, float] = hfield({}, "Taste per art style, e.g. {striped: 0.5}.")
    background: dict[str, float] = hfield({}, "Taste per background colour.")
    shape: dict[str, float] = hfield({}, "Taste per object shape (mean over objects).")
    colour: dict[str, float] = hfield({}, "Taste per object colour (mean over objects).")
    size: dict[str, float] = hfield({}, "Taste per object size (mean over objects).")
    position: dict[str, float] = hfield({}, "Taste per grid cell name (mean over objects).")
    row: dict[str, float] = hfield({}, "Taste per row: top, middle, bottom (mean over objects).")
    col: dict[str, float] = hfield({}, "Taste per column: left, center, right (mean).")
    warmth: float = hfield(0.0, "Taste for warm colours (red/orange/yellow/pink) over cool ones.")
    seed: int = hfield(0, "Seed of the simulation (spammer choice and answers).")

    def validate(self, source: str = "the profile") -> RaterProfile:
        """Check every value; raise ArtalignError naming the key and the fix."""

        def bad(key: str, why: str) -> ArtalignError:
            return ArtalignError(f"rater profile key '{key}' in {source} {why}")

        if not _NAME_RE.match(self.name or ""):
            raise bad("name", f"{self.name!r} must be letters, digits, '-', '_' or '.'")
        if self.n_raters < 1:
            raise bad("n_raters", f"is {self.n_raters}; it must be at least 1")
        for key in ("temperature",):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise bad(key, f"is {value}; it must be a positive number")
        for key in ("spammer_share", "tie_prob", "both_bad_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise bad(key, f"is {value}; it must lie between 0 and 1")
        if not (math.isfinite(self.tie_margin) and self.tie_margin >= 0):
            raise bad("tie_margin", f"is {self.tie_margin}; it must be 0 or more")
        for key in ("fidelity_weight", "warmth"):
            if not math.isfinite(getattr(self, key)):
                raise bad(key, "must be a finite number")
        if self.both_bad_below is not None and not math.isfinite(self.both_bad_below):
            raise bad("both_bad_below", "must be a finite number or null")
        if self.illegible_below is not None and not 0.0 <= self.illegible_below <= 1.0:
            raise bad("illegible_below", f"is {self.illegible_below}; use a number in 0-1 or null")
        for key, allowed in TASTE_KEYS.items():
            table = getattr(self, key)
            if not isinstance(table, Mapping):
                raise bad(key, f"must map {key} names to weights, e.g. {{{allowed[0]}: 0.5}}")
            for value, weight in table.items():
                if value not in allowed:
                    raise bad(key, f"names {value!r}, which is not one of {list(allowed)}")
                if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                    raise bad(key, f"gives {value!r} the weight {weight!r}; use a number")
                if not math.isfinite(weight):
                    raise bad(key, f"gives {value!r} a weight that is not finite")
            setattr(self, key, {str(v): float(w) for v, w in table.items()})
        return self


def load_profile(path: str | Path) -> RaterProfile:
    """Read and validate a rater profile YAML file (unknown keys and bad values are errors)."""
    path = Path(path)
    if not path.is_file():
        raise ArtalignError(f"rater profile {path} does not exist; see configs/raters/*.yaml")
    profile = load_config(RaterProfile, config_file=path)
    if not profile.name:
        profile.name = path.stem
    return profile.validate(str(path))


# ----------------------------------------------------------------------------- utility


def _expected_weight(rec: Mapping[str, Any], key: str, table: Mapping[str, float]) -> float:
    """Sum over the weighed values of P(key = value) * weight (certain without distributions)."""
    return sum(w * p_value(rec, key, v) for v, w in table.items())


def taste(reading: OracleReading | Mapping[str, Any], profile: RaterProfile) -> float:
    """The taste part of the utility: image-level weights plus the mean of per-object weights.

    Each weight counts with the probability the oracle gives its value.
    """
    rec = as_record(reading)
    total = _expected_weight(rec, "style", profile.style)
    total += _expected_weight(rec, "background", profile.background)
    warmth = {c: profile.warmth for c in WARM_COLOURS} | {c: -profile.warmth for c in COOL_COLOURS}
    per_object = []
    for o in rec["objects"]:
        row, col = int(o["row"]), int(o["col"])
        w = _expected_weight(o, "shape", profile.shape) + _expected_weight(o, "size", profile.size)
        w += _expected_weight(o, "colour", profile.colour)
        w += _expected_weight(o, "colour", warmth) if profile.warmth else 0.0
        w += profile.position.get(o.get("position") or position_name(row, col), 0.0)
        w += profile.row.get(ROWS[row], 0.0) + profile.col.get(COLS[col], 0.0)
        per_object.append(w)
    if per_object:
        total += sum(per_object) / len(per_object)
    return float(total)


def utility(
    reading: OracleReading | Mapping[str, Any],
    prompt: str | Mapping[str, Any],
    profile: RaterProfile,
) -> float:
    """Hidden (expected) utility of one image for a prompt (text, or a `parse_prompt` record)."""
    required = parse_prompt(prompt) if isinstance(prompt, str) else dict(prompt)
    rec = as_record(reading)
    return profile.fidelity_weight * expected_fidelity(rec, required) + taste(rec, profile)


# ----------------------------------------------------------------------------- answers


def sigmoid(x: float) -> float:
    """Logistic function, stable for large |x|."""
    return 0.5 * (1.0 + math.tanh(0.5 * x))


def both_illegible(legibilities: Sequence[float], profile: RaterProfile) -> bool:
    """Whether every image of a task is below the profile's `illegible_below` bar."""
    bar = profile.illegible_below
    return bar is not None and bool(legibilities) and max(legibilities) < bar


def pair_probabilities(
    u_left: float, u_right: float, profile: RaterProfile, illegible: bool = False
) -> dict[str, float]:
    """An honest rater's answer distribution for a pair: left / right / tie / both_bad.

    both_bad first (both utilities below `both_bad_below`, or `illegible`: both images below
    `illegible_below`, see `both_illegible`), then a tie (gap below `tie_margin`), then
    Bradley-Terry between left and right with the mass left over.
    """
    rest = 1.0
    p_bad = 0.0
    missed = profile.both_bad_below is not None and max(u_left, u_right) < profile.both_bad_below
    if missed or illegible:
        p_bad = profile.both_bad_prob
        rest -= p_bad
    p_tie = rest * profile.tie_prob if abs(u_left - u_right) < profile.tie_margin else 0.0
    rest -= p_tie
    p_left = rest * sigmoid((u_left - u_right) / profile.temperature)
    return {"left": p_left, "right": rest - p_left, "tie": p_tie, "both_bad": p_bad}


def sample_pair(
    u_left: float,
    u_right: float,
    profile: RaterProfile,
    rng: np.random.Generator,
    spammer: bool = False,
    illegible: bool = False,
) -> str:
    """One pair answer ("left" | "right" | "tie" | "both_bad") from a rater of the profile."""
    probs = SPAMMER_PAIR if spammer else pair_probabilities(u_left, u_right, profile, illegible)
    choices = list(probs)
    p = np.array([probs[c] for c in choices])
    return choices[int(rng.choice(len(choices), p=p / p.sum()))]


def ranks_from_order(order: Sequence[int], tied_to_previous: Sequence[bool]) -> list[int]:
    """Ranks (1 = best, one per image) from a best-first order; ties share the earlier rank.

    `tied_to_previous[p]` says whether order[p] ties with order[p - 1] (entry 0 is ignored),
    so chains tie together: ranks like [1, 2, 2, 4] ("competition" ranking).
    """
    ranks = [0] * len(order)
    for p, item in enumerate(order):
        tied = p > 0 and tied_to_previous[p]
        ranks[item] = ranks[order[p - 1]] if tied else p + 1
    return ranks


def sample_ranking(
    utilities: Sequence[float],
    profile: RaterProfile,
    rng: np.random.Generator,
    spammer: bool = False,
) -> list[int]:
    """Ranks of k images (1 = best) from a rater of the profile.

    Honest raters draw a Plackett-Luce order (the best of the remaining images by softmax of
    u / temperature, one at a time); then each image whose utility is within `tie_margin` of the
    one just above it ties with it with probability `tie_prob`. Spammers: a random order.
    """
    k = len(utilities)
    if k < 2:
        raise ArtalignError(f"a ranking needs at least 2 images, got {k}")
    if spammer:
        return ranks_from_order([int(i) for i in rng.permutation(k)], [False] * k)
    u = np.asarray(utilities, dtype=np.float64)
    remaining = list(range(k))
    order: list[int] = []
    while remaining:
        s = u[remaining] / profile.temperature
        p = np.exp(s - s.max())
        order.append(remaining.pop(int(rng.choice(len(remaining), p=p / p.sum()))))
    tied = [False] + [
        abs(u[order[p]] - u[order[p - 1]]) < profile.tie_margin and rng.random() < profile.tie_prob
        for p in range(1, k)
    ]
    return ranks_from_order(order, tied)
