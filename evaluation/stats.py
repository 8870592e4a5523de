"""Figures with their sample size and a bootstrap 95% confidence interval.

Every figure artalign's evaluation writes is a `Figure`: value, n, ci (percentile bootstrap over
the per-item values, or None where a bootstrap does not apply) and whether higher is better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from base_models.errors import ArtalignError


@dataclass(frozen=True)
class Figure:
    """One measured figure: what metrics.json stores under each metric name."""

    value: float
    n: int
    ci: tuple[float, float] | None = None
    higher_is_better: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic` over the first axis of `values`."""
    x = np.asarray(values)
    if len(x) == 0:
        raise ArtalignError("cannot bootstrap an empty sample; evaluate at least one item")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    stats = np.array([statistic(x[i]) for i in idx], dtype=np.float64)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def mean_figure(
    values: Sequence[float] | np.ndarray,
    higher_is_better: bool | None = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> Figure:
    """The mean of per-item values with its bootstrap CI."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ArtalignError("no items to average; evaluate at least one item")
    return Figure(float(x.mean()), len(x), bootstrap_ci(x, n_boot=n_boot, seed=seed),
                  higher_is_better)  # fmt: skip
