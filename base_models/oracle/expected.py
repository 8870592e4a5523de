"""What a rater expects an unclear image to show: fidelity and legibility under the oracle's doubt.

`fidelity` (fidelity.py) scores the oracle's most likely reading, so a blob the oracle calls a
circle with probability 0.35 earns a circle's full credit. Here each attribute instead earns the
probability that the image shows it, as the oracle's distributions say:
- an object attribute (shape, colour, size) of a read object j: presence_j * p_j(value);
- its place (cell, row or column): presence_j when j sits there, else 0; "exists": presence_j;
- count: P(count = n), the number of cells present being a sum of independent Bernoulli draws,
  one per cell (Poisson binomial);
- background and style: p(value).
Required objects are matched one-to-one to read objects by the assignment that maximises the
expected hits (the same exact search as `fidelity`). A record without distributions (a plain
metadata.jsonl record) means certainty, and the expected fidelity equals `fidelity`.

`legibility` is how clearly an image shows what it shows: the mean over its read objects of
presence * max p(shape) * max p(colour); 1.0 for an image with no object. A person asked to
compare two images that are both illegible blobs answers "both bad" (`base_models.raters`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from base_models.errors import ArtalignError
from base_models.oracle.fidelity import best_assignment, check_value, object_terms
from base_models.oracle.reading import OracleReading


def as_record(reading: OracleReading | Mapping[str, Any]) -> dict[str, Any]:
    """A record with the oracle's distributions when it has them (OracleReading or a dict)."""
    if isinstance(reading, OracleReading):
        return reading.to_record(probabilities=True)
    if isinstance(reading, Mapping):
        objects = reading.get("objects") or []
        return {**reading, "objects": objects, "count": reading.get("count", len(objects))}
    raise ArtalignError(f"a reading is an OracleReading or a record dict, not {type(reading)}")


def p_value(obj_or_record: Mapping[str, Any], key: str, value: Any) -> float:
    """P(key = value) from the record's `probs`, else 1 or 0 from its most likely value."""
    dist = (obj_or_record.get("probs") or {}).get(key)
    if dist:
        return float(dist.get(value, 0.0))
    return float(obj_or_record.get(key) == value)


def p_top(obj_or_record: Mapping[str, Any], key: str) -> float:
    """The probability of the most likely value of `key` (1 without distributions)."""
    dist = (obj_or_record.get("probs") or {}).get(key)
    return float(max(dist.values())) if dist else 1.0


def _presence(obj: Mapping[str, Any]) -> float:
    return float(obj.get("confidence", 1.0))


def _term_probability(key: str, value: Any, obj: Mapping[str, Any]) -> float:
    present = _presence(obj)
    if key == "cell":
        return present * ((int(obj["row"]), int(obj["col"])) == value)
    if key == "row":
        return present * (int(obj["row"]) == value)
    if key == "col":
        return present * (int(obj["col"]) == value)
    if key == "exists":
        return present
    return present * p_value(obj, key, value)


def count_distribution(record: Mapping[str, Any]) -> list[float]:
    """P(count = n) for n = 0..cells: a Poisson binomial over the cells' presence probabilities.

    A record without `presence` has its read count for certain.
    """
    presence = record.get("presence")
    if not presence:
        n = int(record["count"])
        return [float(i == n) for i in range(n + 1)]
    dist = [1.0]
    for p in presence:
        p = float(p)
        dist = [
            (dist[i] if i < len(dist) else 0.0) * (1 - p) + (dist[i - 1] * p if i else 0.0)
            for i in range(len(dist) + 1)
        ]
    return dist


def expected_fidelity(
    reading: OracleReading | Mapping[str, Any], required: dict[str, Any]
) -> float:
    """The expected share of the required attributes the image shows (see the module docstring).

    A `required` record that asks for nothing is satisfied: 1.0.
    """
    read = as_record(reading)
    n_total, hits = 0, 0.0
    required_objects = required.get("objects") or []
    if required_objects:
        terms = [object_terms(o) for o in required_objects]
        scores = [
            [sum(_term_probability(k, v, r) for k, v in t) for r in read["objects"]] for t in terms
        ]
        best, _ = best_assignment(scores)
        n_total += sum(len(t) for t in terms)
        hits += best
    if required.get("count") is not None:
        n_total += 1
        dist = count_distribution(read)
        n = int(required["count"])
        hits += dist[n] if 0 <= n < len(dist) else 0.0
    for key in ("background", "style"):
        if required.get(key) is not None:
            n_total += 1
            hits += p_value(read, key, check_value(key, required[key]))
    return 1.0 if n_total == 0 else float(hits / n_total)


def legibility(reading: OracleReading | Mapping[str, Any]) -> float:
    """How clearly the image shows its objects (0..1; see the module docstring)."""
    objects = as_record(reading)["objects"]
    if not objects:
        return 1.0
    clear = [_presence(o) * p_top(o, "shape") * p_top(o, "colour") for o in objects]
    return float(sum(clear) / len(clear))
