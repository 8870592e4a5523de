"""The analytical agreement ceiling of a simulated-rater profile on a set of tasks.

Two numbers judge a reward model trained on the profile's labels:
- agreement: how often two independent raters drawn from the profile give the same answer. For a
  pair task it is sum over answers of P(answer)^2, where P mixes honest raters and spammers by
  `spammer_share`; for a rank task it is the same on each implied pair of images (i above j,
  below, or tied), averaged over the pairs.
- accuracy: how often one such rater agrees with a perfect reward model, i.e. with the sign of
  u_A - u_B (a tie or both_bad answer, or equal utilities, count as half credit, the PickScore
  protocol). No reward model can beat it against these raters' labels.
Both are exact (rankings with ties are summed over all k! orders, for k <= 8; larger rankings
with ties fall back to a seeded Monte Carlo estimate).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from base_models.errors import ArtalignError
from labeling_app.raters import (
    SPAMMER_PAIR,
    RaterProfile,
    pair_probabilities,
    sample_ranking,
    sigmoid,
)

MAX_EXACT_K = 8
MONTE_CARLO_DRAWS = 20_000


def pair_answer_distribution(
    u_left: float, u_right: float, profile: RaterProfile
) -> dict[str, float]:
    """Answer distribution of a rater drawn from the profile (spammer with P = spammer_share)."""
    honest = pair_probabilities(u_left, u_right, profile)
    s = profile.spammer_share
    return {c: (1 - s) * honest[c] + s * SPAMMER_PAIR[c] for c in honest}


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(x - top).sum(axis=1))


def _exact_rank_marginals(u: np.ndarray, profile: RaterProfile) -> tuple[np.ndarray, np.ndarray]:
    """Sum over all orders: P(i ranked strictly above j) and P(i tied with j), each (k, k)."""
    k = u.size
    perms = np.array(list(itertools.permutations(range(k))))  # (P, k) best-first orders
    s = u[perms] / profile.temperature  # (P, k)
    log_p = np.zeros(len(perms))
    for p in range(k):
        log_p += s[:, p] - _logsumexp(s[:, p:])  # Plackett-Luce: pick order[p] of the rest
    prob = np.exp(log_p)  # (P,)
    gaps = np.abs(np.diff(u[perms], axis=1))  # (P, k-1): link p joins positions p and p+1
    link = np.where(gaps < profile.tie_margin, profile.tie_prob, 0.0)
    # tied[:, a, b] (a <= b): positions a..b form one tie chain = product of links a..b-1
    tied = np.zeros((len(perms), k, k))
    for a in range(k):
        tied[:, a, a] = 1.0
        for b in range(a + 1, k):
            tied[:, a, b] = tied[:, a, b - 1] * link[:, b - 1]
    pos = np.argsort(perms, axis=1)  # (P, k): position of image i in each order
    above, tie = np.zeros((k, k)), np.zeros((k, k))
    for i, j in itertools.permutations(range(k), 2):
        lo, hi = np.minimum(pos[:, i], pos[:, j]), np.maximum(pos[:, i], pos[:, j])
        t = tied[np.arange(len(perms)), lo, hi]
        tie[i, j] = prob @ t
        above[i, j] = prob @ ((pos[:, i] < pos[:, j]) * (1.0 - t))
    return above, tie


def _sampled_rank_marginals(u: np.ndarray, profile: RaterProfile) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(profile.seed)
    k = u.size
    above, tie = np.zeros((k, k)), np.zeros((k, k))
    for _ in range(MONTE_CARLO_DRAWS):
        r = np.asarray(sample_ranking(u, profile, rng))
        above += r[:, None] < r[None, :]
        tie += r[:, None] == r[None, :]
    np.fill_diagonal(tie, 0.0)
    return above / MONTE_CARLO_DRAWS, tie / MONTE_CARLO_DRAWS


def rank_pair_marginals(
    utilities: Sequence[float], profile: RaterProfile
) -> tuple[np.ndarray, np.ndarray]:
    """An honest rater's (P(i above j), P(i tied with j)) for every two images of a ranking.

    Without ties this is Bradley-Terry: Plackett-Luce orders any two images as a pair would.
    """
    u = np.asarray(utilities, dtype=np.float64)
    if u.ndim != 1 or u.size < 2:
        raise ArtalignError(f"a ranking needs a list of at least 2 utilities, got {utilities!r}")
    if profile.tie_margin <= 0 or profile.tie_prob <= 0:
        diff = (u[:, None] - u[None, :]) / profile.temperature
        above = np.vectorize(sigmoid)(diff)
        np.fill_diagonal(above, 0.0)
        return above, np.zeros_like(above)
    if u.size <= MAX_EXACT_K:
        return _exact_rank_marginals(u, profile)
    return _sampled_rank_marginals(u, profile)


def _credit(delta: float, agree: float, disagree: float, neutral: float) -> float:
    """Expected credit of a perfect reward model: 1 if the rater picks the better image."""
    if delta == 0:
        return 0.5 * (agree + disagree) + 0.5 * neutral
    return agree + 0.5 * neutral


def _pair_figures(u: Sequence[float], profile: RaterProfile) -> tuple[float, float]:
    q = pair_answer_distribution(u[0], u[1], profile)
    agreement = sum(p * p for p in q.values())
    delta = u[0] - u[1]
    better, worse = ("left", "right") if delta >= 0 else ("right", "left")
    accuracy = _credit(delta, q[better], q[worse], q["tie"] + q["both_bad"])
    return agreement, accuracy


def _rank_figures(u: Sequence[float], profile: RaterProfile) -> tuple[list[float], list[float]]:
    above, tie = rank_pair_marginals(u, profile)
    s = profile.spammer_share
    agreements, accuracies = [], []
    for i, j in itertools.combinations(range(len(u)), 2):
        q_above = (1 - s) * above[i, j] + s / 2
        q_below = (1 - s) * above[j, i] + s / 2
        q_tie = (1 - s) * tie[i, j]
        agreements.append(q_above**2 + q_below**2 + q_tie**2)
        delta = u[i] - u[j]
        agree, disagree = (q_above, q_below) if delta >= 0 else (q_below, q_above)
        accuracies.append(_credit(delta, agree, disagree, q_tie))
    return agreements, accuracies


def agreement_ceiling(
    profile: RaterProfile, utilities_for_tasks: Iterable[tuple[str, Sequence[float]]]
) -> dict[str, dict[str, float | int | None]]:
    """Agreement and accuracy ceilings of the profile on tasks given as (kind, utilities).

    kind is "pair" (2 utilities, display order) or "rank" (k utilities). Returns
    {"pair": {...}, "rank": {...}, "overall": {...}}, each with n_tasks, n_units (pair tasks, or
    implied pairs of rank tasks), agreement and accuracy (None when there are no such tasks);
    "overall" weighs every unit equally.
    """
    pair_agree, pair_acc, rank_agree, rank_acc = [], [], [], []
    n_pair_tasks = n_rank_tasks = 0
    for kind, u in utilities_for_tasks:
        u = [float(x) for x in u]
        if kind == "pair":
            if len(u) != 2:
                raise ArtalignError(f"a pair task needs 2 utilities, got {len(u)}")
            agreement, accuracy = _pair_figures(u, profile)
            pair_agree.append(agreement)
            pair_acc.append(accuracy)
            n_pair_tasks += 1
        elif kind == "rank":
            agreements, accuracies = _rank_figures(u, profile)
            rank_agree += agreements
            rank_acc += accuracies
            n_rank_tasks += 1
        else:
            raise ArtalignError(f"task kind {kind!r} is not 'pair' or 'rank'")

    def summary(
        n_tasks: int, agree: list[float], acc: list[float]
    ) -> dict[str, float | int | None]:
        return {
            "n_tasks": n_tasks,
            "n_units": len(agree),
            "agreement": float(np.mean(agree)) if agree else None,
            "accuracy": float(np.mean(acc)) if acc else None,
        }

    return {
        "pair": summary(n_pair_tasks, pair_agree, pair_acc),
        "rank": summary(n_rank_tasks, rank_agree, rank_acc),
        "overall": summary(
            n_pair_tasks + n_rank_tasks, pair_agree + rank_agree, pair_acc + rank_acc
        ),
    }
