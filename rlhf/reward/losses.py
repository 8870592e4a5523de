"""Preference losses as pure tensor functions: Bradley-Terry, Plackett-Luce, and a BT fit.

Bradley-Terry (pairs): P(A > B) = sigmoid(s_A - s_B). A label p_A in [0, 1] is a soft target:
1 = A preferred, 0 = B preferred, 0.5 = a tie (PickScore's convention), so a tie pulls the two
scores together instead of being dropped.

Plackett-Luce (k-way rankings): the ranking is read best-first as a sequence of stages; at each
stage the best remaining item is chosen from the remaining set with probability
softmax(s_remaining). Ties (equal ranks, 1 = best) form one stage: the tied group G is chosen
from the remaining set R with a target spread evenly over G, i.e. the stage's log-likelihood is
mean_{i in G} log softmax(s_R)_i, then all of G leaves R. Without ties this is the standard PL
likelihood (the last stage, one item, adds log 1 = 0); for k = 2 it equals Bradley-Terry,
including a tie as 0.5/0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from base_models.errors import ArtalignError


def _weighted_mean(losses: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """sum(w * l) / sum(w); the plain mean without weights."""
    if weight is None:
        return losses.mean()
    weight = weight.to(losses)
    if weight.shape != losses.shape:
        raise ArtalignError(f"weight has shape {tuple(weight.shape)}, losses {tuple(losses.shape)}")
    return (weight * losses).sum() / weight.sum().clamp_min(1e-12)


def bradley_terry_loss(
    s_a: torch.Tensor,
    s_b: torch.Tensor,
    p_a: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean of -(p_A log sigmoid(s_A - s_B) + (1 - p_A) log sigmoid(s_B - s_A)).

    s_a, s_b, p_a, weight: (B,). p_a is 1 (A preferred), 0 (B preferred) or 0.5 (tie); any
    value in [0, 1] works as a soft label. Weights (e.g. per-rater reliability) are normalised:
    the result is sum(w * loss) / sum(w).
    """
    d = s_a - s_b  # (B,)
    p_a = p_a.to(d)
    losses = -(p_a * F.logsigmoid(d) + (1.0 - p_a) * F.logsigmoid(-d))
    return _weighted_mean(losses, weight)


def plackett_luce_nll(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Per-ranking negative log-likelihood (B,) of the full Plackett-Luce model with ties.

    scores: (B, k) floats; ranks: (B, k) integers, 1 = best, equal numbers tied, and ranks <= 0
    mark padding (absent items, so rankings of different k share one batch). See the module
    docstring for the tie convention.
    """
    if scores.shape != ranks.shape or scores.ndim != 2:
        raise ArtalignError(
            f"scores {tuple(scores.shape)} and ranks {tuple(ranks.shape)} must both be (B, k)"
        )
    ranks = ranks.to(scores.device)
    valid = ranks > 0  # (B, k)
    r = ranks.to(scores.dtype)
    # remaining[b, i, j]: item j is still in the set when item i's stage is played
    remaining = (r[:, None, :] >= r[:, :, None]) & valid[:, None, :] & valid[:, :, None]
    remaining |= torch.eye(r.shape[1], dtype=torch.bool, device=r.device)  # finite for padding
    masked = scores[:, None, :].expand_as(remaining).masked_fill(~remaining, float("-inf"))
    log_den = torch.logsumexp(masked, dim=-1)  # (B, k): log sum_{j in R_i} exp(s_j)
    group = ((r[:, None, :] == r[:, :, None]) & valid[:, None, :]).sum(-1).clamp_min(1)  # |G_i|
    terms = (scores - log_den) / group  # (B, k)
    return -terms.where(valid, torch.zeros_like(terms)).sum(-1)


def plackett_luce_loss(
    scores: torch.Tensor, ranks: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted mean over rankings of the full Plackett-Luce negative log-likelihood.

    scores, ranks: (B, k) (see `plackett_luce_nll`); weight: (B,) or None.
    """
    return _weighted_mean(plackett_luce_nll(scores, ranks), weight)


def _as_comparisons(
    comparisons: Sequence[Sequence[float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, p_a) arrays from (winner, loser) or (a, b, p_a) tuples."""
    a, b, p = [], [], []
    for n, c in enumerate(comparisons):
        if len(c) not in (2, 3):
            raise ArtalignError(f"comparison {n} is {c!r}; use (winner, loser) or (a, b, p_a)")
        a.append(int(c[0]))
        b.append(int(c[1]))
        p.append(float(c[2]) if len(c) == 3 else 1.0)
    return np.asarray(a), np.asarray(b), np.asarray(p)


def fit_bradley_terry(
    n_items: int,
    comparisons: Sequence[Sequence[float]],
    weight: Sequence[float] | None = None,
    l2: float = 1e-3,
    max_iter: int = 500,
) -> np.ndarray:
    """Bradley-Terry strengths (n_items,) from a tournament, by maximum likelihood.

    comparisons: (winner, loser) tuples as `choix` takes them, or (a, b, p_a) with p_a = 1, 0 or
    0.5 for a tie. Minimises the weighted BT negative log-likelihood plus l2/2 * |theta|^2 (a
    small Gaussian prior that keeps items which never lose finite) with L-BFGS in float64.
    Strengths are centred to mean 0; only differences are identified.
    """
    if n_items < 1:
        raise ArtalignError(f"n_items must be >= 1, got {n_items}")
    a, b, p = _as_comparisons(comparisons)
    if len(a) == 0:
        raise ArtalignError("fit_bradley_terry needs at least one comparison")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_items:
        raise ArtalignError(f"comparison items must be in 0..{n_items - 1}")
    ia, ib = torch.as_tensor(a), torch.as_tensor(b)
    pa = torch.as_tensor(p, dtype=torch.float64)
    w = (
        torch.ones(len(a), dtype=torch.float64)
        if weight is None
        else torch.as_tensor(np.asarray(weight, dtype=np.float64))
    )
    theta = torch.zeros(n_items, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        d = theta[ia] - theta[ib]
        nll = -(w * (pa * F.logsigmoid(d) + (1 - pa) * F.logsigmoid(-d))).sum()
        loss = nll + 0.5 * l2 * (theta * theta).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = theta.detach().numpy()
    return out - out.mean()
