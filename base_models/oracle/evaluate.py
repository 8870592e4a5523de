"""How well the oracle reads a data set with ground truth: `artalign oracle score`.

Figures (all in [0, 1]):
- shape / colour / size accuracy: over the true objects; an object counts as right when the
  oracle reads an object in the same cell with the same value (a missed object is wrong);
- position accuracy: cells read and true cells compared per image, summed intersection over summed
  union, so both a missed object and an object read where there is none are errors;
- count / background / style accuracy: per image;
- mean_attribute_accuracy: the mean of those seven;
- exact_set_accuracy: per image, the multiset of (colour, shape) read equals the truth's;
- exact_record_accuracy: per image, every object (cell, shape, colour, size), the background and
  the style are right;
- unsafe_accuracy: per image, "has a warning sign" read right (what the safety suite relies on).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from base_models.oracle.model import AttributeOracle
from base_models.oracle.reading import OracleReading, read_images

ATTRIBUTES = ("shape", "colour", "size", "position", "count", "background", "style")


def _cells(record: dict[str, Any]) -> dict[tuple[int, int], dict[str, Any]]:
    return {(int(o["row"]), int(o["col"])): o for o in record.get("objects") or []}


def _check_truth(record: dict[str, Any], where: str) -> None:
    missing = [k for k in ("objects", "background", "style") if k not in record]
    if missing:
        raise ArtalignError(
            f"{where} has no {missing} attributes; score the oracle on a data set made by "
            "`artalign data make` (its metadata.jsonl holds the ground truth)"
        )


def attribute_accuracy(
    readings: Sequence[OracleReading | dict[str, Any]], truths: Sequence[dict[str, Any]]
) -> dict[str, float]:
    """The figures of the module docstring for readings against ground-truth records."""
    if len(readings) != len(truths) or not truths:
        raise ArtalignError(f"{len(readings)} readings for {len(truths)} records; need equal, > 0")
    hit: Counter[str] = Counter()
    n_objects = union = 0
    for reading, truth in zip(readings, truths, strict=True):
        read = reading.to_record() if isinstance(reading, OracleReading) else reading
        true_cells, read_cells = _cells(truth), _cells(read)
        n_objects += len(true_cells)
        union += len(true_cells.keys() | read_cells.keys())
        hit["position"] += len(true_cells.keys() & read_cells.keys())
        objects_right = len(true_cells) == len(read_cells)
        for cell, obj in true_cells.items():
            got = read_cells.get(cell)
            for key in ("shape", "colour", "size"):
                right = got is not None and got[key] == obj[key]
                hit[key] += right
                objects_right &= right
        hit["count"] += len(read_cells) == len(true_cells)
        hit["background"] += read["background"] == truth["background"]
        hit["style"] += read["style"] == truth["style"]
        pairs = [(o["colour"], o["shape"]) for o in truth["objects"]]
        read_pairs = [(o["colour"], o["shape"]) for o in read["objects"]]
        hit["exact_set"] += Counter(pairs) == Counter(read_pairs)
        hit["exact_record"] += (
            objects_right
            and read["background"] == truth["background"]
            and read["style"] == truth["style"]
        )
        true_unsafe = any(o["shape"] == "warning" for o in truth["objects"])
        hit["unsafe"] += true_unsafe == any(o["shape"] == "warning" for o in read["objects"])
    n = len(truths)
    per_object = max(n_objects, 1)
    out = {
        "shape_accuracy": hit["shape"] / per_object,
        "colour_accuracy": hit["colour"] / per_object,
        "size_accuracy": hit["size"] / per_object,
        "position_accuracy": hit["position"] / max(union, 1),
        "count_accuracy": hit["count"] / n,
        "background_accuracy": hit["background"] / n,
        "style_accuracy": hit["style"] / n,
    }
    out["mean_attribute_accuracy"] = sum(out.values()) / len(out)
    out["exact_set_accuracy"] = hit["exact_set"] / n
    out["exact_record_accuracy"] = hit["exact_record"] / n
    out["unsafe_accuracy"] = hit["unsafe"] / n
    return out


def score_oracle(
    model_dir: str | Path, data_dir: str | Path, out: str | Path, batch_size: int = 256
) -> dict[str, Any]:
    """Read every image of the data set with the oracle; write `out/metrics.json`; return it."""
    # lazy: torchvision
    from base_models.data import load_records

    oracle = AttributeOracle.load(model_dir)
    records = load_records(data_dir, require_text=False)
    for r in records[:1]:
        _check_truth(r.attrs, f"data set {data_dir} (item `{r.id}`)")
    start = time.perf_counter()
    readings: list[OracleReading] = []
    for a in tqdm(range(0, len(records), batch_size), desc="oracle score", unit="batch"):
        chunk = records[a : a + batch_size]
        for r in chunk:
            _check_truth(r.attrs, f"item `{r.id}` of {data_dir}")
        readings += read_images(oracle, [r.load_image() for r in chunk], batch_size)
    metrics: dict[str, Any] = attribute_accuracy(readings, [r.attrs for r in records])
    metrics.update(
        {
            "n": len(records),
            "data": str(Path(data_dir).resolve()),
            "model": str(Path(model_dir).resolve()),
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
    write_json(Path(out) / "metrics.json", metrics)
    return metrics
