"""Reward metrics on hand-computed cases: accuracy with ties, tau tuning, ECE, Spearman, CIs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from base_models.errors import ArtalignError
from rlhf.reward.metrics import (
    average_ranks,
    bootstrap_ci,
    chance_corrected,
    expected_calibration_error,
    label_credit,
    pair_credit,
    pairwise_report,
    ranking_spearman,
    rater_ceiling,
    spearman,
    tie_accuracy,
    tune_tie_threshold,
)


def test_pair_credit_follows_the_pickscore_tie_rule():
    # diff = s_a - s_b; labels: A, B, tie
    diff = [2.0, 2.0, -1.0, 0.05, 0.05, 0.05, 0.0, 3.0]
    p_a = [1.0, 0.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.5]
    # tau = 0.1: pairs 3-5 (|d| = 0.05) and 6 (d = 0) are predicted ties
    expected = [1.0, 0.0, 1.0, 0.5, 1.0, 0.5, 0.5, 0.5]
    assert pair_credit(diff, p_a, tau=0.1).tolist() == expected
    assert tie_accuracy(diff, p_a, tau=0.1) == pytest.approx(sum(expected) / 8)
    # tau = 0: only the exact tie (d = 0) is a predicted tie
    assert pair_credit(diff, p_a, tau=0.0).tolist() == [1, 0, 1, 1, 0.5, 0, 0.5, 0.5]


def test_pair_credit_rejects_bad_input():
    with pytest.raises(ArtalignError, match="length"):
        pair_credit([1.0, 2.0], [1.0])
    with pytest.raises(ArtalignError, match="NaN"):
        pair_credit([float("nan")], [1.0])
    with pytest.raises(ArtalignError, match="empty"):
        tie_accuracy([], [])


def test_tau_tuning_finds_the_gap_between_ties_and_preferences():
    rng = np.random.default_rng(0)
    # 40 human ties with small gaps, 60 clear preferences with large, correctly signed gaps
    tie_d = rng.uniform(-0.1, 0.1, 40)
    pref_d = rng.uniform(0.5, 2.0, 60) * rng.choice([-1, 1], 60)
    diff = np.concatenate([tie_d, pref_d])
    p_a = np.concatenate([np.full(40, 0.5), (pref_d > 0).astype(float)])
    tau = tune_tie_threshold(diff, p_a)
    assert 0.1 <= tau <= 0.5
    assert tie_accuracy(diff, p_a, tau) == 1.0
    assert tie_accuracy(diff, p_a, 0.0) == pytest.approx(0.8)  # ties get only half credit


def test_tau_is_zero_without_human_ties():
    diff = np.array([1.0, -0.2, 0.3, -2.0, 0.01])
    p_a = np.array([1.0, 0.0, 0.0, 0.0, 1.0])
    assert tune_tie_threshold(diff, p_a) == 0.0


def test_ece_on_constructed_probabilities():
    # bin [0.2, 0.3): predicted 0.25 twice, labels 0 and 1 -> gap 0.25
    # bin [0.9, 1.0]: predicted 0.9 and 1.0, labels 1 and 1 -> gap 0.05
    prob = [0.25, 0.25, 0.9, 1.0]
    label = [0.0, 1.0, 1.0, 1.0]
    ece, bins = expected_calibration_error(prob, label, n_bins=10)
    assert ece == pytest.approx(0.5 * 0.25 + 0.5 * 0.05)
    assert [(b["lo"], b["n"]) for b in bins] == [(0.2, 2), (0.9, 2)]
    perfect, _ = expected_calibration_error([0.5, 0.5], [0.0, 1.0])
    assert perfect == pytest.approx(0.0)
    tie_labels, _ = expected_calibration_error([0.5, 0.7], [0.5, 0.5], n_bins=1)
    assert tie_labels == pytest.approx(0.1)
    with pytest.raises(ArtalignError, match="probabilities"):
        expected_calibration_error([1.5], [1.0])


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.integers(0, 5, size=12).astype(float)
        b = rng.normal(size=12)
        b[:3] = b[0]
        ref = spearmanr(a, b).statistic
        ours = spearman(a, b)
        if np.isnan(ref):
            assert ours is None
        else:
            assert ours == pytest.approx(ref)
    assert average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_ranking_spearman_uses_rank_one_as_best():
    scores = [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]]
    ranks = [[1, 2, 3], [1, 2, 3], [1, 1, 1]]  # last one: all tied -> undefined
    out = ranking_spearman(scores, ranks)
    assert out == {"mean": pytest.approx(0.0), "n": 2, "n_undefined": 1}
    assert ranking_spearman([[5.0, 1.0]], [[1, 2]])["mean"] == pytest.approx(1.0)


def test_random_scores_are_near_half_on_strict_pairs():
    rng = np.random.default_rng(2)
    n = 4000
    s = rng.normal(size=(n, 2))
    p_a = rng.integers(0, 2, n).astype(float)
    acc = tie_accuracy(s[:, 0] - s[:, 1], p_a)
    assert abs(acc - 0.5) < 0.03


def test_bootstrap_ci_resamples_groups():
    values = np.array([1.0] * 10 + [0.0] * 10)
    groups = ["a"] * 10 + ["b"] * 10
    lo, hi = bootstrap_ci(values, groups, n_boot=500, seed=0)
    assert lo == 0.0 and hi == 1.0  # two groups: a draw is all a, all b or half-half
    same = bootstrap_ci([1.0, 1.0, 1.0], ["x", "y", "z"])
    assert same == (1.0, 1.0)
    assert bootstrap_ci([1.0, 0.0], ["x", "x"]) is None


def test_pairwise_report_tunes_on_val_and_reports_test():
    val = ([0.01, -0.02, 1.0, -1.0], [0.5, 0.5, 1.0, 0.0], ["p1", "p1", "p2", "p2"])
    test = ([0.005, 2.0, -0.5, 0.3], [0.5, 1.0, 0.0, 0.0], ["q1", "q1", "q2", "q3"])
    report = pairwise_report(val, test, n_boot=100)
    assert 0.02 < report["tau"] <= 1.0
    assert report["accuracy"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert report["accuracy_no_ties"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert report["n"] == 4 and report["n_ties"] == 1 and report["n_prompts"] == 3
    assert report["val_accuracy"] == 1.0 and report["n_val"] == 4
    assert 0.0 <= report["ece"] <= 1.0


def test_label_credit_and_rater_ceiling_from_multi_rater_data():
    assert label_credit(1.0, 1.0) == 1.0
    assert label_credit(1.0, 0.0) == 0.0
    assert label_credit(0.5, 1.0) == 0.5 and label_credit(0.0, 0.5) == 0.5
    assert label_credit(0.5, 0.5) == 1.0

    def j(i, task, rater, kind, answer, prompt="p"):
        return {
            "id": i,
            "task_id": task,
            "rater_id": rater,
            "kind": kind,
            "answer": answer,
            "prompt": prompt,
        }

    judgments = [
        j(1, 1, 1, "pair", {"choice": "left"}),
        j(2, 1, 2, "pair", {"choice": "left"}),  # task 1: agree -> 1
        j(3, 2, 1, "pair", {"choice": "left"}),
        j(4, 2, 2, "pair", {"choice": "tie"}),  # task 2: pref vs tie -> 0.5
        j(5, 3, 1, "pair", {"choice": "right"}),  # task 3: one rater only -> left out
        j(6, 4, 1, "rank", {"ranks": [1, 2, 3]}, "q"),
        j(7, 4, 2, "rank", {"ranks": [2, 1, 3]}, "q"),  # implied pairs: 0, 1, 1
        j(8, 5, 1, "pair", {"choice": "left"}, "r"),
        j(9, 5, 2, "pair", {"choice": "right"}, "r"),
        j(10, 5, 3, "pair", {"choice": "both_bad"}, "r"),  # 6 ordered pairs: 0,0,.5,.5,.5,.5
    ]
    out = rater_ceiling(judgments, n_boot=100)
    assert out["n_units"] == 6 and out["n_prompts"] == 3
    assert out["accuracy"] == pytest.approx((1 + 0.5 + 0 + 1 + 1 + 2 / 6) / 6)
    assert out["ci95"] is not None
    assert rater_ceiling(judgments[:1])["accuracy"] is None


def test_chance_corrected_puts_random_at_zero_and_the_ceiling_at_one():
    # the README's case (a): random already earns 0.504 / 0.838 = 0.60 "of the ceiling"
    assert chance_corrected(0.504, 0.504, 0.838) == 0.0
    assert chance_corrected(0.838, 0.504, 0.838) == 1.0
    assert chance_corrected(0.777, 0.504, 0.838) == pytest.approx(0.273 / 0.334)
    assert chance_corrected(0.45, 0.5, 0.9) == pytest.approx(-0.125)  # worse than random
    assert chance_corrected(0.7, 0.6, 0.6) is None  # no room above random: undefined
    assert chance_corrected(0.7, 0.65, 0.6) is None
    assert chance_corrected(None, 0.5, 0.9) is None and chance_corrected(0.7, None, 0.9) is None
    assert chance_corrected(0.7, 0.5, None) is None
