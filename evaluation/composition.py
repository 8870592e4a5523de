"""GenEval-style composition: does each image show what its prompt asks for, read by the oracle?

GenEval (Ghosh et al. 2023) reads generated images with an object detector and scores each
prompt by a rule of its category; artalign reads them with the attribute oracle. The rules, on
the prompt's required record (`parse_prompt`) and the oracle's reading:
- single_object: an object of the asked shape is there;
- two_objects: both asked shapes are there, as two different objects;
- counting: the number of objects read equals the asked count;
- colours: an object of the asked shape has the asked colour (GenEval: the object must be
  detected and its colour right);
- position: an object of the asked shape sits in the asked grid cell;
- colour_attribution: each asked (colour, shape) is bound on its own object: a red star and a
  blue circle, not a blue star and a red circle;
- heldout: an object shows the held-out (colour, shape) pair the prompt asks for, a composition
  the training split never shows.
Objects are matched one-to-one (`base_models.oracle.fidelity`), so one read object never
satisfies two asked objects. The metric also reports "fidelity" (the mean share of all asked
attributes read right, size, background and style included) and "overall" (the mean of the
category accuracies, each category weighted alike as GenEval does). Items of other categories
(the `captions` or `list` sets) pass when every attribute their prompt asks for is read right.
CIs resample prompts, each with all its seeds (the overall one within each category).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.oracle.fidelity import fidelity
from base_models.oracle.reading import read_images
from evaluation.prompt_sets import CATEGORIES, samples_of_set
from evaluation.registry import register_metric
from evaluation.stats import Figure, mean_figure, resample_indices

# The object attributes each category's rule checks (count is checked apart).
RULE_KEYS: dict[str, tuple[str, ...]] = {
    "single_object": ("shape",),
    "two_objects": ("shape",),
    "colours": ("shape", "colour"),
    "position": ("shape", "position"),
    "colour_attribution": ("shape", "colour"),
    "heldout": ("shape", "colour"),
}


def _objects_bound(reading: Any, objects: list[dict[str, Any]], keys: Sequence[str]) -> bool:
    """Every asked object, restricted to `keys`, is satisfied by its own read object."""
    if not objects:
        raise ArtalignError("a composition item asks for no object; its prompt names no shape")
    wanted = [{k: o[k] for k in keys if o.get(k) is not None} for o in objects]
    for w, o in zip(wanted, objects, strict=True):
        missing = [k for k in keys if k not in w]
        if missing:
            raise ArtalignError(f"a composition item's object {o} does not name its {missing}")
    return fidelity(reading, {"objects": wanted})[1]


def item_correct(reading: Any, item: dict[str, Any]) -> bool:
    """Whether `reading` (an OracleReading or a record dict) passes the rule of item's category."""
    category = item.get("category")
    required = item.get("required") or {}
    if category == "counting":
        if required.get("count") is None:
            raise ArtalignError("a counting item needs required['count']")
        count = reading.count if hasattr(reading, "count") else len(reading["objects"])
        return int(count) == int(required["count"])
    if category not in RULE_KEYS:  # captions, a literal list, ...: everything asked for
        return fidelity(reading, required)[1]
    objects = list(required.get("objects") or [])
    if category == "heldout":
        pairs = {tuple(p) for p in item.get("heldout_pairs") or []}
        objects = [o for o in objects if (o.get("colour"), o.get("shape")) in pairs] or objects
    return _objects_bound(reading, objects, RULE_KEYS[category])


def score_items(readings: Sequence[Any], items: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Per-category lists of 1.0 (rule passed) / 0.0, and "fidelity": each image's share."""
    if len(readings) != len(items):
        raise ArtalignError(f"{len(readings)} readings for {len(items)} items")
    out: dict[str, list[float]] = {}
    for reading, item in zip(readings, items, strict=True):
        out.setdefault(item["category"], []).append(float(item_correct(reading, item)))
        out.setdefault("fidelity", []).append(fidelity(reading, item.get("required") or {})[0])
    return out


def score_groups(items: Sequence[dict[str, Any]], prompts: Sequence[str]) -> dict[str, list[str]]:
    """The prompt of each score `score_items` returns, under the same keys and in the same order.

    Several seeds of a prompt are scored alike more often than not, so the CIs resample prompts.
    """
    if len(items) != len(prompts):
        raise ArtalignError(f"{len(prompts)} prompts for {len(items)} items")
    out: dict[str, list[str]] = {}
    for item, prompt in zip(items, prompts, strict=True):
        out.setdefault(item["category"], []).append(prompt)
        out.setdefault("fidelity", []).append(prompt)
    return out


def stratified_ci(
    strata: Sequence[Sequence[float]],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence[Sequence[Hashable]] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of stratum means, resampling within each stratum.

    Resampling within categories keeps every category in every resample, as the suite does.
    `groups` (per stratum, a label per value: its prompt) resamples whole groups, as
    `evaluation.stats.bootstrap_ci` does.
    """
    if groups is not None and len(groups) != len(strata):
        raise ArtalignError(f"{len(groups)} group lists for {len(strata)} strata")
    rng = np.random.default_rng(seed)
    means = np.zeros(n_boot)
    for k, values in enumerate(strata):
        x = np.asarray(values, dtype=np.float64)
        draws = resample_indices(len(x), None if groups is None else groups[k], n_boot, rng)
        means += np.array([x[i].mean() for i in draws])
    lo, hi = np.quantile(means / len(strata), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def composition_figures(
    scores: dict[str, list[float]],
    n_boot: int = 1000,
    seed: int = 0,
    groups: dict[str, Sequence[Hashable]] | None = None,
) -> dict[str, Figure]:
    """One Figure per category (accuracy), "fidelity" and "overall", with bootstrap CIs.

    `groups` (from `score_groups`: each score's prompt, under the keys of `scores`) makes every
    CI resample prompts with all their seeds; without it the CIs resample images.
    """
    groups = groups or {}
    figures: dict[str, Figure] = {}
    categories = [c for c in CATEGORIES if c in scores] + sorted(
        c for c in scores if c not in CATEGORIES and c != "fidelity"
    )
    for key in categories + (["fidelity"] if "fidelity" in scores else []):
        figures[key] = mean_figure(scores[key], n_boot=n_boot, seed=seed, groups=groups.get(key))
    if categories:
        strata = [scores[c] for c in categories]
        by_prompt = [groups[c] for c in categories] if groups else None
        overall = float(np.mean([figures[c].value for c in categories]))
        ci = stratified_ci(strata, n_boot=n_boot, seed=seed, groups=by_prompt)
        n_clusters = sum(len(set(g)) for g in by_prompt) if by_prompt else None
        figures["overall"] = Figure(overall, sum(len(g) for g in strata), ci, True, n_clusters)
    return figures


@register_metric("composition", aspect="composition", higher_is_better=True)
def composition(ctx: Any, samples: Any, on: str = "composition") -> dict[str, Figure]:
    """GenEval-style accuracy per category, read by the attribute oracle; plus fidelity, overall."""
    chosen = samples_of_set(samples, on, "composition")
    readings = read_images(ctx.oracle, chosen.images)
    scores = score_items(readings, chosen.items)
    groups = score_groups(chosen.items, chosen.prompts)
    return composition_figures(scores, ctx.n_boot, ctx.seed, groups)
