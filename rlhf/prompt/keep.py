"""Does a rewrite still ask for everything the user asked for? A text-level intent check.

In the world's vocabulary the check is exact: both prompts are parsed (`parse_prompt`, synonyms
included) and the share of the user's stated attributes (each object's shape, colour, size and
place; the count, background and style) that the rewrite states with the same value is returned,
objects matched one-to-one as in the oracle's fidelity. A rewrite that drops "red" or turns it
into "blue" loses that attribute. Outside the vocabulary (any other model's prompts) it is the
share of the user's words that the rewrite keeps.
"""

from __future__ import annotations

import re
from typing import Any

from base_models.oracle.fidelity import fidelity, parse_prompt
from base_models.world.attributes import GRID, POSITION_NAMES

_WORD_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_STOP = frozenset(["a", "an", "the", "of", "and", "on", "in", "at", "with", "to"])


def _as_reading(parsed: dict[str, Any]) -> dict[str, Any]:
    """A parsed prompt in the layout of an oracle reading (row/col of a named position, else -1)."""
    objects = []
    for obj in parsed.get("objects", []):
        row, col = obj.get("row", -1), obj.get("col", -1)
        if obj.get("position") in POSITION_NAMES:
            row, col = divmod(POSITION_NAMES.index(obj["position"]), GRID)
        objects.append({**obj, "row": row, "col": col})
    return {**parsed, "objects": objects, "count": parsed.get("count", len(objects))}


def kept_share(user_prompt: str, rewrite: str) -> float:
    """Share in [0, 1] of what `user_prompt` asks for that `rewrite` still asks for."""
    required = parse_prompt(user_prompt)
    if required:
        score, _ = fidelity(_as_reading(parse_prompt(rewrite)), required)
        return score
    words = {w for w in _WORD_RE.findall(user_prompt.lower()) if w not in _STOP}
    if not words:
        return 1.0
    return len(words & set(_WORD_RE.findall(rewrite.lower()))) / len(words)


def keeps_intent(user_prompt: str, rewrite: str) -> bool:
    """Whether the rewrite states every attribute of the user's prompt, none contradicted."""
    return kept_share(user_prompt, rewrite) >= 1.0 - 1e-9
