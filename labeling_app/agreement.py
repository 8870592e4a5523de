"""Inter-rater agreement: Krippendorff's alpha, pairwise Cohen's kappa and rater flags.

Pure functions on plain data, so the admin page, `artalign label agreement` and the reward
trainer's reports compute the same numbers. What a "unit" (one thing several raters judged) is:
- a pair task: one nominal unit; its values are the choices left / right / tie / both_bad;
- a rank task with k images: k ordinal units (task, image); each rater's value is the rank they
  gave that image (1 = best; equal ranks are ties);
- optionally, a rank task's k(k-1)/2 *implied pairs* (task, i, j): nominal units whose value is
  "left" when image i ranks above image j, "right" when below, "tie" when equal. They let the
  pair statistics (kappa, flags) use rank tasks too.

Krippendorff's alpha is computed from the coincidence matrix (Krippendorff 2011, "Computing
Krippendorff's Alpha-Reliability"); a test checks it against the `krippendorff` package.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from base_models.errors import ArtalignError

PAIR_CHOICES: tuple[str, ...] = ("left", "right", "tie", "both_bad")
IMPLIED_CHOICES: tuple[str, ...] = ("left", "right", "tie")
Units = dict[Hashable, dict[int, Any]]  # unit key -> {rater id: value}


# ----------------------------------------------------------------------------- alpha


def krippendorff_alpha(
    data: Sequence[Sequence[float]] | np.ndarray,
    level: Literal["nominal", "ordinal"] = "nominal",
) -> float | None:
    """Krippendorff's alpha of a reliability matrix (raters x units, NaN = no value).

    Values are numbers (nominal categories as codes, ordinal values as ranks); the value domain
    is the set of values present, as in the `krippendorff` package. Units with fewer than two
    values carry no pairable information and are left out. Returns None when alpha is
    undefined: no unit with two values, or every pairable value the same (no expected
    disagreement).
    """
    if level not in ("nominal", "ordinal"):
        raise ArtalignError(f"level of measurement {level!r} is not 'nominal' or 'ordinal'")
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ArtalignError(f"a reliability matrix is raters x units (2-D), not shape {x.shape}")
    domain = np.unique(x[~np.isnan(x)])  # (V,) sorted
    if domain.size < 2:
        return None
    counts = (x.T[:, :, None] == domain[None, None, :]).sum(axis=1).astype(np.float64)  # (U, V)
    m = counts.sum(axis=1)  # values per unit
    counts, m = counts[m >= 2], m[m >= 2]
    if counts.shape[0] == 0:
        return None
    weighted = counts / (m - 1)[:, None]  # (U, V)
    # o[c, k] = sum_u (n_uc n_uk - [c == k] n_uc) / (m_u - 1): pairs of values within units
    o = weighted.T @ counts - np.diag(weighted.sum(axis=0))  # (V, V)
    n_v = o.sum(axis=0)
    n = n_v.sum()
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1)  # expected coincidences by chance
    d = _distances(n_v, level)
    expected = float((e * d).sum())
    if expected <= 0.0:
        return None
    return 1.0 - float((o * d).sum()) / expected


def _distances(n_v: np.ndarray, level: str) -> np.ndarray:
    """Squared distances between the (sorted) values of the domain."""
    size = n_v.size
    if level == "nominal":
        return 1.0 - np.eye(size)
    # ordinal: delta(c, k) = (sum of n_g for g from c to k) - (n_c + n_k) / 2, squared
    cum = np.concatenate([[0.0], np.cumsum(n_v)])
    lo = np.minimum.outer(np.arange(size), np.arange(size))
    hi = np.maximum.outer(np.arange(size), np.arange(size))
    between = cum[hi + 1] - cum[lo]
    return (between - (n_v[lo] + n_v[hi]) / 2.0) ** 2


def reliability_matrix(
    units: Units, codes: Mapping[Any, float] | None = None
) -> tuple[np.ndarray, list[int], list[Hashable]]:
    """(matrix raters x units with NaN for missing, rater ids, unit keys) from unit -> values.

    `codes` maps nominal values (e.g. "left") to numbers; without it values must be numbers.
    """
    raters = sorted({r for values in units.values() for r in values})
    keys = list(units)
    row = {r: i for i, r in enumerate(raters)}
    x = np.full((len(raters), len(keys)), np.nan)
    for j, key in enumerate(keys):
        for rater, value in units[key].items():
            x[row[rater], j] = codes[value] if codes is not None else float(value)
    return x, raters, keys


# ----------------------------------------------------------------------------- kappa and flags


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (same order).

    Categories are the union of both raters' labels (as sklearn's `cohen_kappa_score`). None
    when fewer than 2 items, or when chance agreement is 1 (both always gave one same label).
    """
    if len(a) != len(b):
        raise ArtalignError(f"cohen_kappa needs equal-length label lists ({len(a)} vs {len(b)})")
    n = len(a)
    if n < 2:
        return None
    labels = sorted(set(a) | set(b), key=repr)
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    p_o = np.trace(table) / n
    p_e = float(table.sum(axis=1) @ table.sum(axis=0)) / n**2
    if p_e >= 1.0:
        return None
    return float((p_o - p_e) / (1.0 - p_e))


def pairwise_kappa(units: Units) -> dict[tuple[int, int], tuple[float | None, int]]:
    """Cohen's kappa for every two raters sharing at least one unit: (a, b) -> (kappa, shared).

    a < b; kappa is None when they share fewer than 2 units (see `cohen_kappa`).
    """
    shared: dict[tuple[int, int], tuple[list[Any], list[Any]]] = defaultdict(lambda: ([], []))
    for values in units.values():
        for a, b in itertools.combinations(sorted(values), 2):
            la, lb = shared[(a, b)]
            la.append(values[a])
            lb.append(values[b])
    return {pair: (cohen_kappa(la, lb), len(la)) for pair, (la, lb) in sorted(shared.items())}


def flag_raters(
    kappa: Mapping[tuple[int, int], tuple[float | None, int]],
    min_shared: int = 10,
    threshold: float = 0.2,
) -> list[int]:
    """Raters who agree with nobody.

    Rule: a rater is flagged when at least one other rater shares >= `min_shared` units with
    them and has a defined kappa, and every such kappa is below `threshold` (0.2 is the top of
    Landis & Koch's "slight" band). Raters without such a partner are not judged (too little
    overlap). With only two raters both are flagged when they disagree; with three or more,
    honest raters vouch for each other and a spammer stands out.
    """
    partners: dict[int, list[float]] = defaultdict(list)
    for (a, b), (k, n_shared) in kappa.items():
        if k is not None and n_shared >= min_shared:
            partners[a].append(k)
            partners[b].append(k)
    return sorted(r for r, ks in partners.items() if max(ks) < threshold)


# ----------------------------------------------------------------------------- judgments -> units


def _field(record: Any, name: str) -> Any:
    """A field of a Judgment (attribute) or of a plain dict record."""
    return record[name] if isinstance(record, Mapping) else getattr(record, name)


def _latest(judgments: Iterable[Any]) -> list[Any]:
    """One judgment per (task, rater): the latest by id (the store should never hold two)."""
    best: dict[tuple[int, int], Any] = {}
    for j in judgments:
        key = (_field(j, "task_id"), _field(j, "rater_id"))
        if key not in best or _field(j, "id") > _field(best[key], "id"):
            best[key] = j
    return sorted(best.values(), key=lambda j: _field(j, "id"))


def units_from_judgments(judgments: Iterable[Any]) -> dict[str, Units]:
    """Group judgments into units: {"pairs": ..., "ranks": ..., "implied_pairs": ...}.

    pairs: task id -> {rater: choice}; ranks: (task id, image position) -> {rater: rank};
    implied_pairs: (task id, i, j) with i < j -> {rater: "left" | "right" | "tie"} (left: image
    i ranked better). Ranks are normalised to competition ranks (only the order counts). A
    malformed answer raises ArtalignError naming the judgment.
    """
    out: dict[str, Units] = {"pairs": {}, "ranks": {}, "implied_pairs": {}}
    for j in _latest(judgments):
        task, rater, kind = _field(j, "task_id"), _field(j, "rater_id"), _field(j, "kind")
        answer = _field(j, "answer") or {}
        if kind == "pair":
            choice = answer.get("choice")
            if choice not in PAIR_CHOICES:
                raise ArtalignError(f"judgment {_field(j, 'id')}: pair choice {choice!r} unknown")
            out["pairs"].setdefault(task, {})[rater] = choice
        elif kind == "rank":
            ranks = answer.get("ranks")
            if not isinstance(ranks, list) or len(ranks) < 2:
                raise ArtalignError(f"judgment {_field(j, 'id')}: ranks {ranks!r} is not a list")
            ranks = [1 + sum(o < r for o in ranks) for r in ranks]  # [1, 3, 3, 9] -> [1, 2, 2, 4]
            for i, r in enumerate(ranks):
                out["ranks"].setdefault((task, i), {})[rater] = int(r)
            for i, k in itertools.combinations(range(len(ranks)), 2):
                a, b = ranks[i], ranks[k]
                value = "left" if a < b else "right" if a > b else "tie"
                out["implied_pairs"].setdefault((task, i, k), {})[rater] = value
        else:
            raise ArtalignError(f"judgment {_field(j, 'id')}: task kind {kind!r} unknown")
    return out


def rater_throughput(judgments: Iterable[Any]) -> dict[int, dict[str, Any]]:
    """Per rater: judgments (total, pair, rank), median seconds per judgment, judgments per hour.

    Per hour counts active time only (the `seconds` each judgment took), so breaks do not count.
    """
    rows: dict[int, dict[str, Any]] = {}
    secs: dict[int, list[float]] = defaultdict(list)
    for j in judgments:
        rater = _field(j, "rater_id")
        row = rows.setdefault(rater, {"n": 0, "pair": 0, "rank": 0})
        row["n"] += 1
        row[_field(j, "kind")] = row.get(_field(j, "kind"), 0) + 1
        s = _field(j, "seconds")
        if s is not None and s > 0:
            secs[rater].append(float(s))
    for rater, row in rows.items():
        s = secs[rater]
        row["median_seconds"] = statistics.median(s) if s else None
        row["per_hour"] = 3600.0 * len(s) / sum(s) if s else None
    return dict(sorted(rows.items()))


# ----------------------------------------------------------------------------- the report


@dataclass
class AgreementReport:
    """Agreement figures for one set of judgments (a batch, or the whole store).

    alpha_*: Krippendorff's alpha (None when undefined); n_units: units with >= 2 values per
    statistic; kappa: (a, b) -> (Cohen's kappa or None, shared units) over the nominal units
    (pair tasks, plus rank tasks' implied pairs when enabled); flagged: rater ids who agree
    with nobody (`flag_raters`); per_rater: `rater_throughput`.
    """

    alpha_pairs: float | None
    alpha_ranks: float | None
    alpha_implied_pairs: float | None
    n_units: dict[str, int]
    n_judgments: int
    kappa: dict[tuple[int, int], tuple[float | None, int]]
    flagged: list[int]
    per_rater: dict[int, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready layout for metrics.json (rater ids become strings as JSON keys)."""
        return {
            "alpha_pairs_nominal": self.alpha_pairs,
            "alpha_ranks_ordinal": self.alpha_ranks,
            "alpha_implied_pairs_nominal": self.alpha_implied_pairs,
            "n_units": dict(self.n_units),
            "n_judgments": self.n_judgments,
            "kappa": [
                {"rater_a": a, "rater_b": b, "kappa": k, "n_shared": n}
                for (a, b), (k, n) in self.kappa.items()
            ],
            "flagged_raters": list(self.flagged),
            "per_rater": {str(r): dict(row) for r, row in self.per_rater.items()},
            "settings": dict(self.settings),
        }


def agreement_report(
    judgments: Iterable[Any],
    *,
    implied_pairs: bool = True,
    min_shared: int = 10,
    kappa_threshold: float = 0.2,
) -> AgreementReport:
    """Agreement statistics of the store's `Judgment` records (or dicts with the same fields).

    Alpha nominal over pair tasks, ordinal over rank tasks' (task, image) units, and nominal over
    implied pairs; kappa and flags over pair tasks plus, with `implied_pairs`, the implied pairs.
    Pass the judgments a viewer may see (undone ones are normally left out by the store).
    """
    judgments = list(judgments)
    units = units_from_judgments(judgments)
    pair_codes = {c: float(i) for i, c in enumerate(PAIR_CHOICES)}

    def alpha(name: str, level: Literal["nominal", "ordinal"]) -> tuple[float | None, int]:
        pairable = {k: v for k, v in units[name].items() if len(v) >= 2}
        if not pairable:
            return None, 0
        x, _, _ = reliability_matrix(pairable, None if level == "ordinal" else pair_codes)
        return krippendorff_alpha(x, level), len(pairable)

    alpha_pairs, n_pairs = alpha("pairs", "nominal")
    alpha_ranks, n_ranks = alpha("ranks", "ordinal")
    alpha_implied, n_implied = alpha("implied_pairs", "nominal")
    nominal = dict(units["pairs"])
    if implied_pairs:
        nominal.update(units["implied_pairs"])
    kappa = pairwise_kappa(nominal)
    return AgreementReport(
        alpha_pairs=alpha_pairs,
        alpha_ranks=alpha_ranks,
        alpha_implied_pairs=alpha_implied,
        n_units={"pairs": n_pairs, "ranks": n_ranks, "implied_pairs": n_implied},
        n_judgments=len(judgments),
        kappa=kappa,
        flagged=flag_raters(kappa, min_shared, kappa_threshold),
        per_rater=rater_throughput(judgments),
        settings={
            "implied_pairs": implied_pairs,
            "min_shared": min_shared,
            "kappa_threshold": kappa_threshold,
        },
    )
