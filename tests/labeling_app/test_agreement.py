"""Agreement statistics: alpha against the `krippendorff` package, kappa against sklearn, flags."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from base_models.errors import ArtalignError
from labeling_app.agreement import (
    PAIR_CHOICES,
    agreement_report,
    cohen_kappa,
    flag_raters,
    krippendorff_alpha,
    pairwise_kappa,
    rater_throughput,
    reliability_matrix,
    units_from_judgments,
)


def _reference_alpha(x: np.ndarray, level: str) -> float | None:
    try:
        value = krippendorff.alpha(reliability_data=x, level_of_measurement=level)
    except ValueError:  # the package refuses a one-value domain or no pairable unit
        return None
    return None if math.isnan(value) else float(value)


def _random_matrix(rng: np.random.Generator) -> np.ndarray:
    raters, units, values = rng.integers(2, 7), rng.integers(2, 40), rng.integers(2, 7)
    x = rng.integers(1, values + 1, size=(raters, units)).astype(float)
    x[rng.random(x.shape) < rng.uniform(0, 0.5)] = np.nan
    return x


# ----------------------------------------------------------------------------- alpha


@pytest.mark.parametrize("level", ["nominal", "ordinal"])
def test_alpha_matches_krippendorff_package_on_random_data(level):
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(150):
        x = _random_matrix(rng)
        ref, mine = _reference_alpha(x, level), krippendorff_alpha(x, level)
        if ref is None:
            assert mine is None
            continue
        assert mine == pytest.approx(ref, abs=1e-9)
        compared += 1
    assert compared > 100


@pytest.mark.parametrize("level", ["nominal", "ordinal"])
def test_alpha_matches_package_on_agreeing_raters_with_gaps(level):
    # raters mostly agree, non-consecutive values (ordinal distances use the value marginals)
    rng = np.random.default_rng(3)
    truth = rng.choice([1.0, 2.0, 5.0, 9.0], size=60)
    x = np.tile(truth, (4, 1))
    flip = rng.random(x.shape) < 0.2
    x[flip] = rng.choice([1.0, 2.0, 5.0, 9.0], size=flip.sum())
    x[rng.random(x.shape) < 0.25] = np.nan
    mine = krippendorff_alpha(x, level)
    assert mine == pytest.approx(_reference_alpha(x, level), abs=1e-9)
    assert 0.5 < mine < 1.0


def test_alpha_hand_computed_nominal():
    # units 1-3 agree, unit 4 is (2, 1): o11 = 4, o22 = 2, o12 = o21 = 1; n1 = 5, n2 = 3, n = 8
    # D_o = 2 / 8, D_e = 2 * 5 * 3 / (8 * 7); alpha = 1 - (1/4) / (30/56) = 8/15
    x = [[1, 1, 2, 2], [1, 1, 2, 1]]
    assert krippendorff_alpha(x, "nominal") == pytest.approx(8 / 15, abs=1e-12)


def test_alpha_hand_computed_ordinal():
    # two units (1, 2) and (2, 3): o12 = o21 = o23 = o32 = 1, n = (1, 2, 1), n = 4.
    # delta^2(1,2) = (1 + 2 - 1.5)^2 = 2.25 = delta^2(2,3); delta^2(1,3) = (4 - 1)^2 = 9.
    # D_o = 4 * 2.25 = 9 (unnormalised); E = (n n^T - diag n) / 3:
    # e12 = e21 = 2/3, e23 = e32 = 2/3, e13 = e31 = 1/3 -> sum(e d) = 4 * 1.5 + 2 * 3 = 12.
    x = [[1, 2], [2, 3]]
    assert krippendorff_alpha(x, "ordinal") == pytest.approx(1 - 9 / 12, abs=1e-12)


def test_alpha_edge_cases():
    assert krippendorff_alpha([[1, 2, 1], [1, 2, 1]], "nominal") == 1.0
    assert krippendorff_alpha([[1, 1], [1, 1]], "nominal") is None  # one value: undefined
    assert krippendorff_alpha([[1, np.nan], [np.nan, 2]], "nominal") is None  # nothing pairable
    with pytest.raises(ArtalignError, match="level of measurement"):
        krippendorff_alpha([[1, 2]], "interval")
    with pytest.raises(ArtalignError, match="2-D"):
        krippendorff_alpha([1, 2, 3], "nominal")


def test_reliability_matrix_layout():
    units = {"t1": {3: "left", 1: "right"}, "t2": {1: "tie"}}
    x, raters, keys = reliability_matrix(units, {c: i for i, c in enumerate(PAIR_CHOICES)})
    assert raters == [1, 3] and keys == ["t1", "t2"]
    np.testing.assert_array_equal(x, [[1, 2], [0, np.nan]])


# ----------------------------------------------------------------------------- kappa and flags


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn warns where kappa is undefined
def test_kappa_matches_sklearn_on_random_labels():
    rng = np.random.default_rng(11)
    checked = 0
    for _ in range(200):
        n = int(rng.integers(2, 40))
        a = list(rng.choice(PAIR_CHOICES, size=n, p=[0.4, 0.4, 0.1, 0.1]))
        b = [x if rng.random() < 0.6 else str(rng.choice(PAIR_CHOICES)) for x in a]
        ref = cohen_kappa_score(a, b)
        mine = cohen_kappa(a, b)
        if math.isnan(ref):
            assert mine is None
        else:
            assert mine == pytest.approx(ref, abs=1e-12)
            checked += 1
    assert checked > 150


def test_kappa_hand_computed_and_undefined():
    # p_o = 3/4; p_e = (2 * 1 + 2 * 3) / 16 = 1/2 -> kappa = 1/2
    assert cohen_kappa(["l", "l", "r", "r"], ["l", "r", "r", "r"]) == pytest.approx(0.5)
    assert cohen_kappa(["l"], ["l"]) is None  # fewer than 2 shared items
    assert cohen_kappa(["l", "l"], ["l", "l"]) is None  # chance agreement 1: undefined
    with pytest.raises(ArtalignError):
        cohen_kappa(["l"], ["l", "r"])


def test_pairwise_kappa_counts_shared_units():
    units = {
        1: {1: "left", 2: "left", 3: "right"},
        2: {1: "right", 2: "right"},
        3: {1: "left", 3: "left"},
    }
    kappa = pairwise_kappa(units)
    assert set(kappa) == {(1, 2), (1, 3), (2, 3)}
    assert kappa[(1, 2)] == (1.0, 2)
    assert kappa[(2, 3)] == (None, 1)  # a single shared unit
    k13, n13 = kappa[(1, 3)]
    assert n13 == 2 and k13 == pytest.approx(cohen_kappa_score(["left", "left"], ["right", "left"]))


def _spammer_units(n_units: int = 200, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    units = {}
    for t in range(n_units):
        truth = str(rng.choice(["left", "right"]))
        units[t] = {
            1: truth,
            2: truth if rng.random() < 0.9 else "tie",
            3: truth if rng.random() < 0.85 else "right",
            4: str(rng.choice(["left", "right"])),  # the spammer
        }
    return units


def test_flags_single_out_the_spammer():
    kappa = pairwise_kappa(_spammer_units())
    assert flag_raters(kappa, min_shared=10, threshold=0.2) == [4]
    # too little overlap: nobody is judged
    assert flag_raters(kappa, min_shared=1000) == []
    # an absurd threshold flags everyone who has a partner
    assert flag_raters(kappa, min_shared=10, threshold=1.01) == [1, 2, 3, 4]


# ----------------------------------------------------------------------------- report


def _j(id, task, rater, kind, answer, seconds=2.0):
    return {
        "id": id,
        "task_id": task,
        "rater_id": rater,
        "kind": kind,
        "prompt": "p",
        "image_ids": [],
        "answer": answer,
        "created_at": 0.0,
        "seconds": seconds,
    }


def test_units_from_judgments_implied_pairs_and_latest_wins():
    judgments = [
        _j(1, 10, 1, "pair", {"choice": "left"}),
        _j(2, 10, 1, "pair", {"choice": "tie"}),  # a later row for the same (task, rater) wins
        _j(3, 20, 2, "rank", {"ranks": [1, 3, 3, 9]}),
    ]
    units = units_from_judgments(judgments)
    assert units["pairs"] == {10: {1: "tie"}}
    assert units["ranks"][(20, 1)] == {2: 2} and units["ranks"][(20, 3)] == {2: 4}
    assert units["implied_pairs"][(20, 0, 1)] == {2: "left"}
    assert units["implied_pairs"][(20, 1, 2)] == {2: "tie"}
    assert units["implied_pairs"][(20, 2, 3)] == {2: "left"}
    with pytest.raises(ArtalignError, match="judgment 9"):
        units_from_judgments([_j(9, 1, 1, "pair", {"choice": "up"})])
    with pytest.raises(ArtalignError, match="kind"):
        units_from_judgments([_j(9, 1, 1, "rate", {})])


def test_agreement_report_matches_reference_statistics():
    rng = np.random.default_rng(5)
    judgments, jid = [], 0
    ranks_matrix = {}
    for task in range(30):  # pair tasks, 3 raters each out of 4
        for rater in rng.choice([1, 2, 3, 4], size=3, replace=False):
            jid += 1
            choice = str(rng.choice(PAIR_CHOICES, p=[0.5, 0.3, 0.1, 0.1]))
            judgments.append(_j(jid, task, int(rater), "pair", {"choice": choice}))
    for task in range(100, 110):  # 3-way rank tasks, every rater, no ties
        for rater in (1, 2, 3, 4):
            jid += 1
            ranks = [int(r) for r in rng.permutation(3) + 1]
            judgments.append(_j(jid, task, rater, "rank", {"ranks": ranks}, seconds=None))
            for i, r in enumerate(ranks):
                ranks_matrix.setdefault((task, i), {})[rater] = r
    objects = [SimpleNamespace(**j) for j in judgments]  # attribute access, like store.Judgment
    report = agreement_report(objects, min_shared=5)

    codes = {c: i for i, c in enumerate(PAIR_CHOICES)}
    pair_units = units_from_judgments(judgments)["pairs"]
    x_pairs, _, _ = reliability_matrix(pair_units, codes)
    x_ranks, _, _ = reliability_matrix(ranks_matrix)
    assert report.alpha_pairs == pytest.approx(_reference_alpha(x_pairs, "nominal"), abs=1e-9)
    assert report.alpha_ranks == pytest.approx(_reference_alpha(x_ranks, "ordinal"), abs=1e-9)
    assert report.n_units == {"pairs": 30, "ranks": 30, "implied_pairs": 30}
    assert report.n_judgments == len(judgments)
    # kappa uses pair tasks and implied pairs; each rater pair shares all 30 implied pairs
    assert all(n >= 30 for _, n in report.kappa.values())
    assert report.per_rater[1]["n"] == sum(j["rater_id"] == 1 for j in judgments)
    assert report.per_rater[1]["rank"] == 10
    assert report.per_rater[1]["median_seconds"] == 2.0
    assert report.per_rater[1]["per_hour"] == pytest.approx(1800.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["alpha_pairs_nominal"] == report.alpha_pairs
    assert len(data["kappa"]) == len(report.kappa) == 6
    without = agreement_report(judgments, implied_pairs=False, min_shared=5)
    assert all(n < 30 for _, n in without.kappa.values())
    assert without.alpha_pairs == report.alpha_pairs


def test_agreement_report_flags_spammer_and_handles_empty():
    judgments, jid = [], 0
    for task, values in _spammer_units().items():
        for rater, choice in values.items():
            jid += 1
            judgments.append(_j(jid, task, rater, "pair", {"choice": choice}))
    report = agreement_report(judgments)
    assert report.flagged == [4]
    assert report.alpha_pairs is not None and 0.2 < report.alpha_pairs < 0.9
    empty = agreement_report([])
    assert empty.alpha_pairs is None and empty.alpha_ranks is None and empty.flagged == []
    assert empty.n_units == {"pairs": 0, "ranks": 0, "implied_pairs": 0}


def test_throughput_skips_missing_seconds():
    rows = rater_throughput([_j(1, 1, 7, "pair", {}, 4.0), _j(2, 2, 7, "rank", {}, None)])
    assert rows == {7: {"n": 2, "pair": 1, "rank": 1, "median_seconds": 4.0, "per_hour": 900.0}}
