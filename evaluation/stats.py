"""Figures with their sample size and a bootstrap 95% confidence interval.

Every figure artalign's evaluation writes is a `Figure`: value, n, ci (percentile bootstrap, or
None where a bootstrap does not apply) and whether higher is better.

The bootstrap resamples items, or, given `groups` (the prompt of each item), whole groups: a
suite draws several seeds per prompt, and images of one prompt tend to pass or fail together, so
resampling images as if independent gives intervals that are too narrow (by up to √seeds when
the seeds of a prompt agree). A clustered figure records its number of groups as `n_clusters`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from base_models.errors import ArtalignError


@dataclass(frozen=True)
class Figure:
    """One measured figure: what metrics.json stores under each metric name.

    n is the number of items (images or pairs); n_clusters, when the CI resampled groups of items
    (prompts), the number of groups; metrics.json omits it otherwise.
    """

    value: float
    n: int
    ci: tuple[float, float] | None = None
    higher_is_better: bool | None = None
    n_clusters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        if self.n_clusters is None:
            del d["n_clusters"]
        return d


def count_groups(groups: Sequence[Hashable] | None) -> int | None:
    """The number of distinct groups (a Figure's n_clusters), or None without groups."""
    return None if groups is None else len(set(groups))


def resample_indices(
    n: int, groups: Sequence[Hashable] | None, n_boot: int, rng: np.random.Generator
) -> np.ndarray | list[np.ndarray]:
    """n_boot bootstrap draws of item indices into n items.

    Without groups: (n_boot, n) indices drawn with replacement. With groups (one label per item):
    each draw picks as many groups as there are, with replacement, and takes every item of each
    group picked, so draws differ in length when groups do in size. With one item per group the
    draws are exactly those without groups.
    """
    if groups is None:
        return rng.integers(0, n, size=(n_boot, n))
    if len(groups) != n:
        raise ArtalignError(f"{n} values but {len(groups)} group labels; pass one per value")
    ids: dict[Hashable, int] = {}
    gid = np.array([ids.setdefault(g, len(ids)) for g in groups], dtype=np.int64)
    order = np.argsort(gid, kind="stable")  # group g's items: order[start[g] : start[g] + size[g]]
    size = np.bincount(gid, minlength=len(ids))
    start = np.cumsum(size) - size
    picks = rng.integers(0, len(ids), size=(n_boot, len(ids)))  # (B, G)
    draws = []
    for p in picks:
        sizes = size[p]
        # the concatenated ranges start[p_j] .. start[p_j] + sizes_j - 1, without a Python loop
        offset = np.repeat(start[p] - (np.cumsum(sizes) - sizes), sizes)
        draws.append(order[offset + np.arange(sizes.sum())])
    return draws


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic` over the first axis of `values`.

    `groups` (one label per item, e.g. each image's prompt) resamples whole groups instead of
    items: the cluster bootstrap, for items that are not independent within a group.
    """
    x = np.asarray(values)
    if len(x) == 0:
        raise ArtalignError("cannot bootstrap an empty sample; evaluate at least one item")
    rng = np.random.default_rng(seed)
    draws = resample_indices(len(x), groups, n_boot, rng)
    stats = np.array([statistic(x[i]) for i in draws], dtype=np.float64)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def mean_figure(
    values: Sequence[float] | np.ndarray,
    higher_is_better: bool | None = True,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
) -> Figure:
    """The mean of per-item values with its bootstrap CI (over `groups` when given)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ArtalignError("no items to average; evaluate at least one item")
    ci = bootstrap_ci(x, n_boot=n_boot, seed=seed, groups=groups)
    return Figure(float(x.mean()), len(x), ci, higher_is_better, count_groups(groups))
