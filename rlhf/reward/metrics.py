"""Pure metrics of a reward model on held-out preferences: scores and labels in, numbers out.

Accuracy with ties follows PickScore (Kirstain et al. 2023, "Pick-a-Pic", section 5): the model
predicts a tie when |s_a - s_b| < tau (or the scores are exactly equal), and a pair earns
- 1 when the model and the human agree (the same preferred image, or both a tie),
- 0.5 when exactly one of them says tie (a human tie against a predicted preference, or a
  human preference against a predicted tie),
- 0 when they prefer different images.
tau is tuned on the validation split (the candidate that maximises validation accuracy, among 0
and the quantiles of validation |s_a - s_b|) and then applied unchanged to the test split.

A label p_a is P(A preferred): 1 (A), 0 (B) or 0.5 (tie; a "both bad" answer is a tie too).
Numbers come with their n; confidence intervals resample prompts (the unit of the split).
An accuracy set against a ceiling is also given chance-corrected (`chance_corrected`): the share
of the gap between random scores and the ceiling that the model closes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from labeling_app.agreement import units_from_judgments

DEFAULT_QUANTILES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 0.5, 51), 3))
"""Quantiles of validation |s_a - s_b| tried as tau (with tau = 0, which predicts no ties)."""


def _arrays(diff: Any, p_a: Any) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    p = np.asarray(p_a, dtype=np.float64).reshape(-1)
    if d.shape != p.shape:
        raise ArtalignError(f"scores and labels differ in length ({d.size} vs {p.size})")
    if not (np.isfinite(d).all() and np.isfinite(p).all()):
        raise ArtalignError("scores or labels hold NaN or infinite values")
    return d, p


def pair_credit(diff: Any, p_a: Any, tau: float = 0.0) -> np.ndarray:
    """Per-pair credit (1, 0.5 or 0) of predictions s_a - s_b = `diff` against labels `p_a`.

    The model predicts a tie when |diff| < tau or diff == 0 (equal scores name no winner).
    """
    d, p = _arrays(diff, p_a)
    pred_tie = (np.abs(d) < tau) | (d == 0)
    label_tie = p == 0.5
    agree = np.where(p > 0.5, d > 0, d < 0)
    strict = np.where(pred_tie, 0.5, agree.astype(np.float64))
    return np.where(label_tie, np.where(pred_tie, 1.0, 0.5), strict)


def tie_accuracy(diff: Any, p_a: Any, tau: float = 0.0) -> float:
    """Mean `pair_credit`: pairwise accuracy with ties as half credit (PickScore protocol)."""
    credit = pair_credit(diff, p_a, tau)
    if credit.size == 0:
        raise ArtalignError("no pairs to score; the split is empty")
    return float(credit.mean())


def tune_tie_threshold(
    diff: Any, p_a: Any, quantiles: Sequence[float] = DEFAULT_QUANTILES
) -> float:
    """The tau that maximises validation accuracy over 0 and quantiles of |diff|.

    On equal accuracy the smallest tau wins (fewest predicted ties). Without human ties in the
    validation labels predicting a tie never helps, so tau comes out 0.
    """
    d, p = _arrays(diff, p_a)
    if d.size == 0:
        raise ArtalignError("cannot tune the tie threshold on an empty validation split")
    candidates = np.unique(np.concatenate([[0.0], np.quantile(np.abs(d), quantiles)]))
    scores = [pair_credit(d, p, float(t)).mean() for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def expected_calibration_error(
    prob: Any, target: Any, n_bins: int = 10
) -> tuple[float, list[dict[str, float | int]]]:
    """ECE of predicted P(A preferred) against labels p_a in {0, 0.5, 1}, and the bins.

    Bins are `n_bins` equal-width intervals of [0, 1] (the last one closed); ECE is the
    n-weighted mean over non-empty bins of |mean predicted - mean label| (Guo et al. 2017 on
    the probability of A rather than on the top class, so a human tie counts as 0.5).
    """
    q, y = _arrays(prob, target)
    if q.size == 0:
        raise ArtalignError("no pairs to compute the calibration error on")
    if n_bins < 1:
        raise ArtalignError(f"n_bins must be at least 1, got {n_bins}")
    if q.min() < 0 or q.max() > 1:
        raise ArtalignError("calibration needs probabilities in [0, 1]")
    index = np.minimum((q * n_bins).astype(int), n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        if n == 0:
            continue
        mean_q, mean_y = float(q[mask].mean()), float(y[mask].mean())
        ece += n / q.size * abs(mean_q - mean_y)
        bins.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "n": n,
                "mean_prob": mean_q,
                "mean_label": mean_y,
            }
        )
    return float(ece), bins


def sigmoid(x: Any) -> np.ndarray:
    """Logistic function, stable for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def average_ranks(x: Any) -> np.ndarray:
    """Ranks 1..n of the values (ascending), ties sharing their mean rank (as scipy's rankdata)."""
    v = np.asarray(x, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    starts = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], v.size] - 1
    ranks = np.empty(v.size)
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def spearman(a: Any, b: Any) -> float | None:
    """Spearman's rho of two equal-length sequences (average ranks for ties), None if undefined.

    Equal to `scipy.stats.spearmanr(a, b).statistic` (tested); scipy is only a dev dependency,
    so it is computed here as the Pearson correlation of average ranks.
    """
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.size != rb.size:
        raise ArtalignError(f"spearman needs equal lengths ({ra.size} vs {rb.size})")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    if ra.size < 2 or denom == 0.0:
        return None
    return float((ra * rb).sum() / denom)


def ranking_spearman(
    scores: Sequence[Sequence[float]], ranks: Sequence[Sequence[int]]
) -> dict[str, float | int | None]:
    """Mean Spearman correlation of model scores with human ranks over k-way rankings.

    Rank 1 is best, so each ranking's rho is taken between the scores and the negated ranks.
    Rankings where rho is undefined (all human ranks tied, or all scores equal) are left out
    and counted in n_undefined.
    """
    rhos, undefined = [], 0
    for s, r in zip(scores, ranks, strict=True):
        rho = spearman(s, -np.asarray(r, dtype=np.float64))
        if rho is None:
            undefined += 1
        else:
            rhos.append(rho)
    return {
        "mean": float(np.mean(rhos)) if rhos else None,
        "n": len(rhos),
        "n_undefined": undefined,
    }


def bootstrap_ci(
    values: Any,
    groups: Sequence[Hashable],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile CI of the mean of `values`, resampling whole groups (prompts) with replacement.

    Each draw takes as many groups as there are, with replacement, and averages every value of
    the groups drawn; None when there are fewer than 2 groups.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != len(groups):
        raise ArtalignError(f"{v.size} values but {len(groups)} group labels")
    _, gid = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    n_groups = int(gid.max()) + 1 if gid.size else 0
    if n_groups < 2:
        return None
    sums = np.bincount(gid, weights=v, minlength=n_groups)
    counts = np.bincount(gid, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))  # (B, G)
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def accuracy_summary(
    diff: Any, p_a: Any, groups: Sequence[Hashable], tau: float, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Accuracy at tau with its bootstrap CI, split into human-preference and human-tie pairs."""
    d, p = _arrays(diff, p_a)
    credit = pair_credit(d, p, tau)
    ci = bootstrap_ci(credit, groups, n_boot=n_boot, seed=seed)
    strict = p != 0.5
    return {
        "accuracy": float(credit.mean()) if credit.size else None,
        "ci95": list(ci) if ci else None,
        "n": int(credit.size),
        "n_prompts": len(set(map(str, groups))),
        "tau": float(tau),
        "accuracy_strict": float(credit[strict].mean()) if strict.any() else None,
        "n_strict": int(strict.sum()),
        "accuracy_ties": float(credit[~strict].mean()) if (~strict).any() else None,
        "n_ties": int((~strict).sum()),
        "predicted_tie_share": float(((np.abs(d) < tau) | (d == 0)).mean()) if d.size else None,
    }


def pairwise_report(
    val: tuple[Any, Any, Sequence[Hashable]] | None,
    test: tuple[Any, Any, Sequence[Hashable]],
    n_boot: int = 1000,
    seed: int = 0,
    n_bins: int = 10,
) -> dict[str, Any]:
    """All pair metrics of one scorer: tau tuned on `val`, then accuracy and ECE on `test`.

    Each split is (s_a - s_b, p_a, prompt per pair). Without a validation split tau is 0.
    Also reports test accuracy at tau = 0 (no predicted ties) for comparison.
    """
    diff, p_a, groups = test
    if val is not None and len(val[0]) > 0:
        tau = tune_tie_threshold(val[0], val[1])
        val_acc = tie_accuracy(val[0], val[1], tau)
    else:
        tau, val_acc = 0.0, None
    report = accuracy_summary(diff, p_a, groups, tau, n_boot=n_boot, seed=seed)
    report["accuracy_no_ties"] = tie_accuracy(diff, p_a, 0.0)
    report["val_accuracy"] = val_acc
    report["n_val"] = len(val[0]) if val is not None else 0
    ece, bins = expected_calibration_error(sigmoid(diff), p_a, n_bins)
    report["ece"] = ece
    report["ece_bins"] = bins
    return report


def chance_corrected(
    accuracy: float | None, random: float | None, ceiling: float | None
) -> float | None:
    """(accuracy - random) / (ceiling - random): 0 for random scores, 1 at the ceiling.

    A raw ratio accuracy / ceiling flatters every model, since random scores already earn half
    credit or more; `random` must be the random scorer's accuracy on the same pairs under the
    same rule. None when a figure is missing or the ceiling does not exceed random.
    """
    if accuracy is None or random is None or ceiling is None or ceiling <= random:
        return None
    return (accuracy - random) / (ceiling - random)


_CHOICE_P = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}


def label_credit(predicted: float, actual: float) -> float:
    """Credit of one label used as a prediction of another (1, 0.5 or 0; ties half credit)."""
    if predicted == 0.5 or actual == 0.5:
        return 1.0 if predicted == actual else 0.5
    return 1.0 if (predicted > 0.5) == (actual > 0.5) else 0.0


def rater_ceiling(judgments: Sequence[Any], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """How well one rater predicts another on units judged by 2+ raters (the human ceiling).

    Units are pair tasks and the implied pairs of rank tasks (`labeling_app.agreement`); a
    "both bad" answer is a tie. Within a unit every ordered pair of raters (one predicts, the
    other is the truth) is scored with the tie rule of `pair_credit`; a unit's credit is the mean
    over its ordered pairs, and the ceiling is the mean over units, with a CI over prompts.
    It is the accuracy of a human used as the model, not an upper bound: a model that predicts
    what most raters answer scores higher (raters who say A 70% of the time agree with each
    other 0.7^2 + 0.3^2 = 58% of the time, with "always A" 70%).
    Judgments are the store's `Judgment` records (or dicts with task_id, rater_id, kind, prompt,
    answer, id).
    """

    def field(j: Any, name: str) -> Any:
        return j[name] if isinstance(j, dict) else getattr(j, name)

    prompt_of = {field(j, "task_id"): field(j, "prompt") for j in judgments}
    units = units_from_judgments(judgments)
    credits, groups = [], []
    for kind in ("pairs", "implied_pairs"):
        for key, by_rater in units[kind].items():
            labels = [_CHOICE_P[v] for v in by_rater.values()]
            if len(labels) < 2:
                continue
            scored = [
                label_credit(a, b)
                for i, a in enumerate(labels)
                for k, b in enumerate(labels)
                if i != k
            ]
            credits.append(float(np.mean(scored)))
            groups.append(prompt_of[key if kind == "pairs" else key[0]])
    ci = bootstrap_ci(credits, groups, n_boot=n_boot, seed=seed) if credits else None
    return {
        "accuracy": float(np.mean(credits)) if credits else None,
        "ci95": list(ci) if ci else None,
        "n_units": len(credits),
        "n_prompts": len(set(groups)),
    }
