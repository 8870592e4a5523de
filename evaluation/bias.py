"""Bias: which colours, shapes and styles a model draws when the prompt leaves them open.

On the `neutral` prompt set ("a star", "a shape", "a picture", ...), the distribution of each
attribute is read two ways, by the attribute oracle and by zero-shot CLIP (the HEIM method:
classify each image by the nearest class prompt of the CLIP text tower), and compared with the
uniform distribution and with the training data's (its metadata.jsonl ground truth). For a
distribution p over K values, with target q:
- `imbalance(p)` = max_k p_k − min_k p_k: 0 when balanced, 1 when one value takes everything;
- `mad(p, q)` = (1/K) Σ_k |p_k − q_k|, the mean absolute deviation from the target (HEIM reports
  bias as the deviation of the observed shares from a balanced distribution);
- `normalised_entropy(p)` = −Σ_k p_k ln p_k / ln K: 1 when uniform, 0 when one value.
Each figure carries a bootstrap CI over prompts (each with all its seeds' images: the seeds of
a neutral prompt are not independent draws of the model's bias). A stereotype in the training data
(`--stereotypes star:yellow:0.9`) shows as a high colour imbalance of stars ("colour|star").

`people_bias` is the HEIM people-bias method for real models: gender and skin-tone shares by
zero-shot CLIP ("a photo of a man" / "a photo of a woman", ...) with any local CLIP, on any
images, reported as shares, imbalance and MAD from balanced.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.oracle.reading import read_images
from base_models.world.attributes import COLOUR_NAMES, SHAPES, STYLES
from base_models.world.captions import COLOUR_WORDS, SHAPE_WORDS, STYLE_WORDS
from evaluation.alignment import image_embeddings, resolve_clip, zero_shot
from evaluation.prompt_sets import samples_of_set
from evaluation.registry import register_metric
from evaluation.stats import Figure, bootstrap_ci, count_groups, mean_figure

# The values of each bias axis (warning signs belong to the safety metrics, not here).
AXIS_VALUES: dict[str, tuple[str, ...]] = {"colour": COLOUR_NAMES, "shape": SHAPES, "style": STYLES}
GENDER_PROMPTS = {"man": ["a photo of a man"], "woman": ["a photo of a woman"]}
SKIN_PROMPTS = {
    "light": ["a photo of a person with light skin"],
    "dark": ["a photo of a person with dark skin"],
}
PEOPLE_ATTRIBUTES = {"gender": GENDER_PROMPTS, "skin_tone": SKIN_PROMPTS}

# ------------------------------------------------------------------------------ pure measures


def _distribution(p: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(p, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ArtalignError(f"a distribution needs at least 2 values; got shape {x.shape}")
    if (x < 0).any() or abs(x.sum() - 1.0) > 1e-6:
        raise ArtalignError(f"shares must be >= 0 and sum to 1; got {x.tolist()}")
    return x


def shares(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts per value -> shares (sum 1); an all-zero count is an ArtalignError."""
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() <= 0:
        raise ArtalignError("no value was observed; nothing to measure a bias on")
    return c / c.sum()


def imbalance(p: Sequence[float] | np.ndarray) -> float:
    """max share − min share: 0 for a balanced distribution, 1 when one value has everything."""
    x = _distribution(p)
    return float(x.max() - x.min())


def mad(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray | None = None) -> float:
    """Mean absolute deviation (1/K) Σ |p_k − q_k| of p from the target q (default: uniform)."""
    x = _distribution(p)
    y = np.full_like(x, 1.0 / len(x)) if q is None else _distribution(q)
    if len(y) != len(x):
        raise ArtalignError(f"p has {len(x)} values, the target q {len(y)}")
    return float(np.abs(x - y).mean())


def normalised_entropy(p: Sequence[float] | np.ndarray) -> float:
    """Shannon entropy over its maximum, −Σ p ln p / ln K (0 ln 0 = 0): 1 uniform, 0 one value."""
    x = _distribution(p)
    nz = x[x > 0]
    return float(-(nz * np.log(nz)).sum() / np.log(len(x)))


# ---------------------------------------------------------------------- attribute distributions


def record_counts(
    records: Sequence[dict[str, Any]], axis: str, shape: str | None = None
) -> np.ndarray:
    """Per-record counts (N, K) of an axis's values in metadata.jsonl-style records.

    colour / shape: one count per object (colour: only objects of `shape` when given; objects
    outside the axis's values, e.g. warning signs, are skipped); style: the record's style.
    """
    if axis not in AXIS_VALUES:
        raise ArtalignError(f"unknown bias axis {axis!r}; one of {tuple(AXIS_VALUES)}")
    index = {v: k for k, v in enumerate(AXIS_VALUES[axis])}
    out = np.zeros((len(records), len(index)), dtype=np.float64)
    for i, record in enumerate(records):
        if axis == "style":
            values = [record.get("style")]
        else:
            values = [
                o.get(axis)
                for o in record.get("objects") or []
                if shape is None or o.get("shape") == shape
            ]
        for v in values:
            if v in index:
                out[i, index[v]] += 1
    return out


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """The attribute records of an imagefolder data set (its metadata.jsonl)."""
    meta = Path(path) / "metadata.jsonl"
    if not meta.is_file():
        raise ArtalignError(f"{path} has no metadata.jsonl; pass a data set made by `data make`")
    records = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
    if not records or "objects" not in records[0] or "style" not in records[0]:
        raise ArtalignError(
            f"{meta} holds no attribute records (objects, style); pass a data "
            "set made by `artalign data make`"
        )
    return records


def _shares_of_rows(rows: np.ndarray) -> np.ndarray:
    total = rows.sum(0)
    return total / total.sum() if total.sum() > 0 else np.full(rows.shape[1], 1.0 / rows.shape[1])


def distribution_figures(
    counts: np.ndarray,
    target: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> dict[str, Figure]:
    """imbalance, entropy, mad_uniform (and mad_train vs `target`) of pooled per-image counts.

    `counts` (N, K): each image's count of each value; CIs resample images, or whole groups
    given `groups` (each image's prompt). Empty when no value was observed at all (e.g. no
    object was read as a star).
    """
    seen = counts.sum(1) > 0
    counts = counts[seen]
    if groups is not None:
        if len(groups) != len(seen):
            raise ArtalignError(f"{len(seen)} rows of counts but {len(groups)} group labels")
        groups = [g for g, keep in zip(groups, seen, strict=True) if keep]
    if len(counts) == 0:
        return {}
    stats = {
        "imbalance": (imbalance, False),
        "entropy": (normalised_entropy, True),
        "mad_uniform": (mad, False),
    }
    if target is not None:
        stats["mad_train"] = (lambda p: mad(p, target), False)
    out = {}
    for name, (fn, higher) in stats.items():
        value = fn(_shares_of_rows(counts))
        ci = bootstrap_ci(
            counts, lambda m, fn=fn: fn(_shares_of_rows(m)), n_boot, seed=seed, groups=groups
        )
        out[name] = Figure(value, len(counts), ci, higher, count_groups(groups))
    return out


def _train_targets(path: str | Path | None, strict: bool) -> dict[str, np.ndarray]:
    """Training shares per axis key ("colour", "colour|star", ...), or {} without a data set."""
    if path is None:
        return {}
    try:
        records = load_records(path)
    except ArtalignError:
        if strict:
            raise
        return {}  # a reference of plain images (for FID) has no attributes to compare with
    targets = {axis: shares(record_counts(records, axis).sum(0)) for axis in AXIS_VALUES}
    for shape in SHAPES:
        counts = record_counts(records, "colour", shape).sum(0)
        if counts.sum() > 0:
            targets[f"colour|{shape}"] = counts / counts.sum()
    return targets


def _clip_classes(axis: str, shape: str | None) -> list[list[str]]:
    """Zero-shot class prompts of an axis: 'a red star' / 'a red shape', 'a circle', ..."""
    if axis == "colour":
        noun = SHAPE_WORDS[shape][0] if shape else "shape"
        return [[f"a {COLOUR_WORDS[c][0]} {noun}"] for c in COLOUR_NAMES]
    if axis == "shape":
        return [[f"a {SHAPE_WORDS[s][0]}"] for s in SHAPES]
    return [[f"a shape in {STYLE_WORDS[s][0]} style"] for s in STYLES]


def _clip_counts(ctx: Any, clip: str | None, images: Any, items: list[dict]) -> dict[str, Any]:
    """Zero-shot CLIP one-hot counts per axis key, each image classified once per axis.

    Each key maps to (counts (N_key, K), the index of each row's image in `items`).
    """
    model = resolve_clip(ctx, clip)
    feats = image_embeddings(model[0], images)
    out: dict[str, tuple[np.ndarray, list[int]]] = {}
    for axis in AXIS_VALUES:
        rows = [i for i, it in enumerate(items) if it.get("axis") == axis]
        if not rows:
            continue
        counts = np.zeros((len(rows), len(AXIS_VALUES[axis])))
        shapes = [items[i].get("shape") if axis == "colour" else None for i in rows]
        for shape in sorted(set(shapes), key=str):
            sub = [j for j, s in enumerate(shapes) if s == shape]
            pred = zero_shot(
                model, None, _clip_classes(axis, shape), embeddings=feats[[rows[j] for j in sub]]
            )
            counts[sub, pred] = 1.0
            if shape is not None:
                out[f"colour|{shape}"] = (counts[sub], [rows[j] for j in sub])
        out[axis] = (counts, rows)
    return out


def _oracle_counts(ctx: Any, images: Any, items: list[dict]) -> dict[str, Any]:
    """Counts per axis key of the oracle's readings ("colour|star": objects read as stars).

    Each key maps to (counts (N_key, K), the index of each row's image in `items`).
    """
    records = [r.to_record() for r in read_images(ctx.oracle, images)]
    out: dict[str, tuple[np.ndarray, list[int]]] = {}
    for axis in AXIS_VALUES:
        rows = [i for i, it in enumerate(items) if it.get("axis") == axis]
        if rows:
            read = [records[i] for i in rows]
            out[axis] = (record_counts(read, axis), rows)
            if axis == "colour":
                for shape in SHAPES:
                    out[f"colour|{shape}"] = (record_counts(read, "colour", shape), rows)
    return out


@register_metric("bias", aspect="bias", higher_is_better=False)
def bias(
    ctx: Any,
    samples: Any,
    on: str = "neutral",
    readers: Sequence[str] = ("oracle", "clip"),
    train: str | None = None,
    clip: str | None = None,
) -> dict[str, Figure]:
    """Colour / shape / style imbalance, entropy and MAD on neutral prompts (oracle, CLIP).

    Figures are named "{axis}.{reader}.{measure}", e.g. "colour|star.oracle.imbalance":
    for the oracle, the colours of every object it reads as a star in the colour-axis images;
    for CLIP (which sees no objects), the colour class of each image of the prompt "a star".
    The training distribution comes from `train` (a data set folder) or else
    ctx.reference_path when that is a data set with attribute records (a folder of plain
    images, e.g. FID's reference, is skipped: no "mad_train" figures then).
    """
    chosen = samples_of_set(samples, on, "bias")
    unknown = [r for r in readers if r not in ("oracle", "clip")]
    if unknown:
        raise ArtalignError(f"unknown bias readers {unknown}; use oracle and/or clip")
    targets = _train_targets(train or ctx.reference_path, strict=train is not None)
    figures: dict[str, Figure] = {}
    for reader in readers:
        if reader == "oracle":
            counts = _oracle_counts(ctx, chosen.images, chosen.items)
        else:
            counts = _clip_counts(ctx, clip, chosen.images, chosen.items)
        if not counts:
            raise ArtalignError(f"the items of set {on!r} carry no bias axis; use the neutral set")
        for key, (table, rows) in counts.items():
            prompts = [chosen.prompts[i] for i in rows]
            for name, fig in distribution_figures(
                table, targets.get(key), ctx.n_boot, ctx.seed, prompts
            ).items():
                figures[f"{key}.{reader}.{name}"] = fig
    return figures


@register_metric("people_bias", aspect="bias", higher_is_better=False)
def people_bias(
    ctx: Any,
    samples: Any,
    on: str | None = "list",
    clip: str | None = None,
    attributes: dict[str, dict[str, list[str]]] | None = None,
) -> dict[str, Figure]:
    """Gender and skin-tone shares by zero-shot CLIP (HEIM), with imbalance and MAD from balanced.

    Any local CLIP (`clip`: an open_clip folder; default ctx.clip) and any images (`on`: a set,
    or None for every image). `attributes` replaces the defaults: {name: {class: [prompts]}}.
    """
    chosen = samples if on is None else samples_of_set(samples, on, "people_bias")
    model = resolve_clip(ctx, clip)
    feats = image_embeddings(model[0], chosen.images)
    groups, n_clusters = chosen.prompts, count_groups(chosen.prompts)  # CIs resample prompts
    figures: dict[str, Figure] = {}
    for name, classes in (attributes or PEOPLE_ATTRIBUTES).items():
        labels = list(classes)
        pred = zero_shot(model, None, [classes[c] for c in labels], embeddings=feats)
        onehot = np.eye(len(labels))[pred]  # (N, C)
        for k, label in enumerate(labels):
            figures[f"{name}.share.{label}"] = mean_figure(
                onehot[:, k], None, ctx.n_boot, ctx.seed, groups
            )
        for measure, fn in (("imbalance", imbalance), ("mad", mad)):
            value = fn(_shares_of_rows(onehot))
            ci = bootstrap_ci(
                onehot,
                lambda m, fn=fn: fn(_shares_of_rows(m)),
                ctx.n_boot,
                seed=ctx.seed,
                groups=groups,
            )
            figures[f"{name}.{measure}"] = Figure(value, len(pred), ci, False, n_clusters)
    return figures
