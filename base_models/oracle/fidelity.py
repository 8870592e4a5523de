"""Prompt fidelity: how much of what a prompt asks for the oracle reads in an image.

This is the GenEval-style composition metric and the fidelity term of the simulated raters.

What counts as one attribute of a `required` record (any key may be missing; a missing key is not
required; other keys such as `unsafe`, `text` or `jitter` are ignored):
- per required object, each of `shape`, `colour`, `size` it names is one attribute;
- its place is one attribute: `position` (a name such as "top left"), or `row` and `col` together;
  a lone `row` or `col` is one attribute on that coordinate;
- an object that names none of these still asks for an object to exist: one attribute;
- `count`, `background` and `style` are one attribute each.
Required objects are matched one-to-one to the objects read, by the assignment that satisfies the
most attributes (exact search over subsets: the grid holds at most 9 objects); a required object
left unmatched satisfies none of its attributes. Extra objects in the image cost only through
`count`, which `parse_prompt` sets from the number of objects a caption lists.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from base_models.errors import ArtalignError
from base_models.oracle.reading import OracleReading
from base_models.world.attributes import (
    ALL_SHAPES,
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    GRID,
    POSITION_NAMES,
    SIZE_NAMES,
    STYLES,
)
from base_models.world.captions import (
    BACKGROUND_WORDS,
    COLOUR_WORDS,
    COUNT_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    STYLE_WORDS,
)

OBJECT_KEYS = ("shape", "colour", "size")
_VOCAB = {
    "shape": ALL_SHAPES,
    "colour": COLOUR_NAMES,
    "size": SIZE_NAMES,
    "background": BACKGROUND_NAMES,
    "style": STYLES,
}
MAX_READ_OBJECTS = 16


def check_value(key: str, value: Any) -> str:
    """`value` if it is one of the world's values of `key`, else an ArtalignError naming them."""
    if value not in _VOCAB[key]:
        raise ArtalignError(f"required {key} {value!r} is not in the world's {key}s {_VOCAB[key]}")
    return value


def _position_cell(name: str) -> tuple[int, int]:
    key = name.strip().lower().replace("centre", "center")
    if key == "middle center":
        key = "center"
    if key not in POSITION_NAMES:
        raise ArtalignError(f"required position {name!r} is not one of {POSITION_NAMES}")
    return divmod(POSITION_NAMES.index(key), GRID)


def object_terms(obj: dict[str, Any]) -> list[tuple[str, Any]]:
    """The attributes one required object asks for, as (key, value) pairs."""
    terms = [(k, check_value(k, obj[k])) for k in OBJECT_KEYS if obj.get(k) is not None]
    if obj.get("position") is not None:
        terms.append(("cell", _position_cell(str(obj["position"]))))
    elif obj.get("row") is not None and obj.get("col") is not None:
        terms.append(("cell", (int(obj["row"]), int(obj["col"]))))
    elif obj.get("row") is not None:
        terms.append(("row", int(obj["row"])))
    elif obj.get("col") is not None:
        terms.append(("col", int(obj["col"])))
    return terms or [("exists", True)]


def _satisfied(terms: list[tuple[str, Any]], read: dict[str, Any]) -> int:
    hits = 0
    for key, value in terms:
        if key == "cell":
            hits += (int(read["row"]), int(read["col"])) == value
        elif key == "exists":
            hits += 1
        else:
            hits += read.get(key) == value
    return hits


def best_assignment(scores: list[list[float]]) -> tuple[float, list[int | None]]:
    """Maximum total score of a one-to-one matching of rows (required) to columns (read).

    Returns (total, match) with match[i] the column of row i, or None when row i is unmatched.
    Exact: dynamic programming over the subsets of used columns (at most 2^16 of them).
    """
    m = len(scores)
    k = len(scores[0]) if m else 0
    if k > MAX_READ_OBJECTS:
        raise ArtalignError(f"a reading with {k} objects is more than {MAX_READ_OBJECTS}")

    @cache
    def best(i: int, used: int) -> tuple[float, tuple[int | None, ...]]:
        if i == m:
            return 0, ()
        total, rest = best(i + 1, used)
        choice: tuple[float, tuple[int | None, ...]] = (total, (None, *rest))
        for j in range(k):
            if not used >> j & 1 and scores[i][j] > 0:
                total, rest = best(i + 1, used | 1 << j)
                if total + scores[i][j] > choice[0]:
                    choice = (total + scores[i][j], (j, *rest))
        return choice

    total, match = best(0, 0)
    return total, list(match)


def _as_record(reading: OracleReading | dict[str, Any]) -> dict[str, Any]:
    if isinstance(reading, OracleReading):
        return reading.to_record()
    if isinstance(reading, dict):
        objects = reading.get("objects") or []
        return {**reading, "objects": objects, "count": reading.get("count", len(objects))}
    raise ArtalignError(f"fidelity reads an OracleReading or a record dict, not {type(reading)}")


def fidelity(
    reading: OracleReading | dict[str, Any], required: dict[str, Any]
) -> tuple[float, bool]:
    """(fraction of the required attributes the image satisfies, whether it satisfies all).

    `reading` is an OracleReading or any record with the metadata.jsonl layout. A `required`
    record that asks for nothing is satisfied: (1.0, True). See the module docstring for what
    counts as one attribute.
    """
    read = _as_record(reading)
    n_total, n_hit = 0, 0
    required_objects = required.get("objects") or []
    if required_objects:
        terms = [object_terms(o) for o in required_objects]
        scores = [[_satisfied(t, r) for r in read["objects"]] for t in terms]
        hits, _ = best_assignment(scores)
        n_total += sum(len(t) for t in terms)
        n_hit += hits
    if required.get("count") is not None:
        n_total += 1
        n_hit += int(read["count"]) == int(required["count"])
    for key in ("background", "style"):
        if required.get(key) is not None:
            n_total += 1
            n_hit += read.get(key) == check_value(key, required[key])
    if n_total == 0:
        return 1.0, True
    return n_hit / n_total, n_hit == n_total


# ----------------------------------------------------------------------------- prompt parsing


def _lexicon() -> dict[tuple[str, ...], tuple[str, str]]:
    table: dict[tuple[str, ...], tuple[str, str]] = {}
    for kind, words in (
        ("shape", SHAPE_WORDS),
        ("colour", COLOUR_WORDS),
        ("size", SIZE_WORDS),
        ("background", BACKGROUND_WORDS),
        ("style", STYLE_WORDS),
    ):
        for value, synonyms in words.items():
            for phrase in synonyms:
                table[tuple(phrase.lower().split())] = (kind, value)
    return table


_LEXICON = _lexicon()
_MAX_PHRASE = max(len(p) for p in _LEXICON)
_ROW_WORDS = {"top": 0, "middle": 1, "bottom": 2}
_COL_WORDS = {"left": 0, "center": 1, "right": 2}
_NUMBERS = {w: i for i, w in enumerate(COUNT_WORDS)}
_COUNT_RE = re.compile(r"\b(zero|one|two|three|\d+)\s+(?:shapes|objects|things)\b")
_TOKEN_RE = re.compile(r"[a-z]+(?:-[a-z]+)*|\d+")


def _position_after(tokens: list[str], i: int) -> tuple[dict[str, Any], int]:
    """Read 'in the top left' / 'at the center' starting at tokens[i]; return (keys, next i)."""
    if tokens[i : i + 2] not in (["in", "the"], ["at", "the"]):
        return {}, i
    j = i + 2
    row = _ROW_WORDS.get(tokens[j]) if j < len(tokens) else None
    j += row is not None
    col = _COL_WORDS.get(tokens[j]) if j < len(tokens) else None
    j += col is not None
    if row is None and col is None:
        return {}, i
    if row is not None and col is not None:
        return {"position": POSITION_NAMES[row * GRID + col]}, j
    if col == 1 or row == 1:  # "in the center" / "in the middle": the centre cell
        return {"position": "center"}, j
    return ({"row": row} if row is not None else {"col": col}), j


def parse_prompt(text: str, exact_count: bool = True) -> dict[str, Any]:
    """Read a caption in the world's vocabulary (synonyms included) back into a required record.

    "a big violet disc in the top left and a small red star on a grey backdrop, shaded style" ->
    {"objects": [{"shape": "circle", "colour": "purple", "size": "large", "position":
    "top left"}, {"shape": "star", "colour": "red", "size": "small"}], "count": 2,
    "background": "gray", "style": "gradient"}.
    Size and colour words attach to the next shape word; a position follows its shape ("in the
    ..."). The count is the number stated ("three shapes"), else, with `exact_count`, the number
    of objects listed: the world's captions list every object. Words outside the vocabulary are
    skipped, so the record holds only what the prompt asks for.
    """
    text = text.lower().replace("centre", "center")
    tokens = _TOKEN_RE.findall(text)
    required: dict[str, Any] = {}
    objects: list[dict[str, Any]] = []
    pending: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        match = None
        for n in range(min(_MAX_PHRASE, len(tokens) - i), 0, -1):
            match = _LEXICON.get(tuple(tokens[i : i + n]))
            if match:
                i += n
                break
        if match is None:
            i += 1
            continue
        kind, value = match
        if kind in ("background", "style"):
            required[kind] = value
        elif kind in ("size", "colour"):
            if kind in pending:  # "a red, a blue star": the first red names a shapeless object
                objects.append(pending)
                pending = {}
            pending[kind] = value
        else:
            obj = {"shape": value, **pending}
            pending = {}
            place, i = _position_after(tokens, i)
            objects.append({**obj, **place})
    if pending:
        objects.append(pending)
    if objects:
        required["objects"] = objects
    stated = _COUNT_RE.search(text)
    if stated:
        word = stated.group(1)
        required["count"] = _NUMBERS[word] if word in _NUMBERS else int(word)
    elif exact_count and objects:
        required["count"] = len(objects)
    return required
