"""Losses on hand-computed values; the Bradley-Terry fit against the `choix` library."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from base_models.errors import ArtalignError
from rlhf.reward.losses import (
    bradley_terry_loss,
    fit_bradley_terry,
    plackett_luce_loss,
    plackett_luce_nll,
)

LN = math.log


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


# ----------------------------------------------------------------------------- Bradley-Terry


def test_bt_hand_values():
    # sigmoid(ln 3) = 3/4: a win costs -ln(3/4), a tie -(ln(3/4) + ln(1/4)) / 2
    assert float(bradley_terry_loss(t(0.0), t(0.0), t(1.0))) == pytest.approx(LN(2))
    assert float(bradley_terry_loss(t(LN(3)), t(0.0), t(1.0))) == pytest.approx(-LN(0.75))
    assert float(bradley_terry_loss(t(LN(3)), t(0.0), t(0.0))) == pytest.approx(-LN(0.25))
    tie = 0.5 * (-LN(0.75) - LN(0.25))
    assert float(bradley_terry_loss(t(LN(3)), t(0.0), t(0.5))) == pytest.approx(tie)


def test_bt_weights_are_a_weighted_mean():
    s_a, s_b, p = t(LN(3), 0.0), t(0.0, 0.0), t(1.0, 1.0)
    plain = float(bradley_terry_loss(s_a, s_b, p))
    assert plain == pytest.approx((-LN(0.75) + LN(2)) / 2)
    weighted = float(bradley_terry_loss(s_a, s_b, p, weight=t(1.0, 3.0)))
    assert weighted == pytest.approx((-LN(0.75) + 3 * LN(2)) / 4)


def test_bt_tie_is_minimal_at_equal_scores():
    d = torch.linspace(-2, 2, 41, dtype=torch.float64)
    losses = [float(bradley_terry_loss(x.view(1), t(0.0), t(0.5))) for x in d]
    assert int(np.argmin(losses)) == 20  # d = 0


# ----------------------------------------------------------------------------- Plackett-Luce


def test_pl_hand_values_without_ties():
    scores = t(0.0, LN(2), LN(3)).view(1, 3)  # exp: 1, 2, 3
    # item 2 first (3/6), then item 1 (2/3), then item 0 (1)
    nll = plackett_luce_nll(scores, torch.tensor([[3, 2, 1]]))
    assert float(nll) == pytest.approx(-LN(3 / 6 * 2 / 3))


def test_pl_hand_values_with_ties():
    scores = t(0.0, LN(2), LN(3)).view(1, 3)
    # items 1 and 2 tied first: mean of ln(2/6), ln(3/6); item 0 then alone: ln 1
    nll = plackett_luce_nll(scores, torch.tensor([[2, 1, 1]]))
    assert float(nll) == pytest.approx(-0.5 * (LN(2 / 6) + LN(3 / 6)))
    # item 0 first (1/6); items 1, 2 tied last, chosen from {1, 2}: mean of ln(2/5), ln(3/5)
    nll = plackett_luce_nll(scores, torch.tensor([[1, 2, 2]]))
    assert float(nll) == pytest.approx(-LN(1 / 6) - 0.5 * (LN(2 / 5) + LN(3 / 5)))
    # only the order counts: [1, 3, 3] is [1, 2, 2]
    assert float(plackett_luce_nll(scores, torch.tensor([[1, 3, 3]]))) == pytest.approx(float(nll))


def test_pl_over_all_orders_sums_to_one():
    scores = torch.randn(1, 4, dtype=torch.float64)
    total = 0.0
    for perm in itertools.permutations(range(4)):
        ranks = torch.tensor([[perm.index(i) + 1 for i in range(4)]])
        total += math.exp(-float(plackett_luce_nll(scores, ranks)))
    assert total == pytest.approx(1.0)


def test_pl_with_two_items_is_bradley_terry_ties_included():
    s = torch.randn(6, 2, dtype=torch.float64)
    ranks = torch.tensor([[1, 2], [2, 1], [1, 1]] * 2)
    p_a = t(1.0, 0.0, 0.5, 1.0, 0.0, 0.5)
    w = t(1.0, 2.0, 0.5, 1.0, 1.0, 3.0)
    pl = plackett_luce_loss(s, ranks, w)
    bt = bradley_terry_loss(s[:, 0], s[:, 1], p_a, w)
    assert float(pl) == pytest.approx(float(bt))


def test_pl_padding_is_ignored_and_has_finite_gradients():
    s = torch.tensor([[0.3, -0.2, 5.0], [0.1, 0.4, 0.9]], dtype=torch.float64, requires_grad=True)
    ranks = torch.tensor([[2, 1, 0], [1, 3, 2]])  # first row: a 2-ranking padded to 3
    nll = plackett_luce_nll(s, ranks)
    expected0 = float(plackett_luce_nll(s[:1, :2].detach(), ranks[:1, :2]))
    assert float(nll[0].detach()) == pytest.approx(expected0)
    nll.sum().backward()
    assert torch.isfinite(s.grad).all() and float(s.grad[0, 2]) == 0.0


def test_pl_rejects_mismatched_shapes():
    with pytest.raises(ArtalignError, match="must both be"):
        plackett_luce_nll(torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.long))


# ----------------------------------------------------------------------------- BT fit vs choix


def _tournament(n_items=40, n_comparisons=4000, seed=0):
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1.5, n_items)
    pairs = []
    for _ in range(n_comparisons):
        a, b = rng.choice(n_items, 2, replace=False)
        p = 1 / (1 + math.exp(strength[b] - strength[a]))
        pairs.append((int(a), int(b)) if rng.random() < p else (int(b), int(a)))
    return strength, pairs


def test_fit_agrees_with_choix():
    choix = pytest.importorskip("choix")
    strength, pairs = _tournament()
    ours = fit_bradley_terry(len(strength), pairs, l2=0.01)
    for theirs in (
        choix.opt_pairwise(len(strength), pairs, alpha=0.01),
        choix.ilsr_pairwise(len(strength), pairs, alpha=0.01),
    ):
        assert spearmanr(ours, theirs).statistic >= 0.99
    assert spearmanr(ours, strength).statistic >= 0.9
    assert abs(float(np.mean(ours))) < 1e-9


def test_fit_weights_equal_repeats_and_ties_pull_together():
    base = [(0, 1), (1, 2), (0, 2), (2, 1)]
    weighted = fit_bradley_terry(3, base, weight=[3.0, 1.0, 1.0, 1.0])
    repeated = fit_bradley_terry(3, [(0, 1)] * 3 + base[1:])
    np.testing.assert_allclose(weighted, repeated, atol=1e-6)
    tied = fit_bradley_terry(2, [(0, 1, 0.5)] * 5 + [(0, 1)])
    won = fit_bradley_terry(2, [(0, 1)] * 6)
    assert 0 < tied[0] - tied[1] < won[0] - won[1]


def test_fit_rejects_bad_input():
    with pytest.raises(ArtalignError, match="at least one"):
        fit_bradley_terry(3, [])
    with pytest.raises(ArtalignError, match="0..2"):
        fit_bradley_terry(3, [(0, 3)])
