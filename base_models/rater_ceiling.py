"""The analytical agreement and accuracy ceilings of a simulated-rater profile on a set of tasks.

Every figure is an expectation over one rater drawn from the profile (an honest rater,
or a spammer with probability `spammer_share`), taken per unit (a pair task, or one implied
pair (i, j) of a rank task) and averaged over the units. With (q_a, q_b, q_tie) the rater's
probabilities of preferring A, preferring B or calling a tie ("both bad" counts as a tie):
- agreement: how often two independent raters give the same answer (for a pair task the sum
  over its four answers of P(answer)^2; for an implied pair q_a^2 + q_b^2 + q_tie^2).
- accuracy: the best expected credit any prediction can earn against the rater's answer under
  the tie rule the evaluation scores with (`rlhf.reward.metrics.pair_credit`, PickScore):
  1 when prediction and answer agree (the same image, or both a tie), 0.5 when exactly one of
  them is a tie, 0 otherwise. Predicting A earns q_a + q_tie/2, B earns q_b + q_tie/2 and a tie
  earns 1/2 + q_tie/2, so the best is max(q_a, q_b, 1/2) + q_tie/2: a perfect model predicts a
  tie exactly when neither image is preferred by more than half the raters. Its mean is an
  upper bound on the expected accuracy of any reward model, with any tie threshold, against
  these raters' labels (accuracy on a finite sample of labels can exceed it by chance only; a
  scorer with one global tie threshold may not reach it).
- accuracy_no_ties: the same bound for a model that never predicts a tie (tau = 0),
  max(q_a, q_b) + q_tie/2: pick the image the raters prefer more often (the one of higher
  utility; equal utilities earn 1/2). Compare it with an accuracy measured at tau = 0.
All are exact: rankings with ties are summed over all k! orders for k <= 8; only larger rankings
with ties fall back to a seeded Monte Carlo estimate.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.raters import (
    SPAMMER_PAIR,
    RaterProfile,
    pair_probabilities,
    sample_ranking,
    sigmoid,
)

MAX_EXACT_K = 8
MONTE_CARLO_DRAWS = 20_000


def pair_answer_distribution(
    u_left: float, u_right: float, profile: RaterProfile, illegible: bool = False
) -> dict[str, float]:
    """Answer distribution of a rater drawn from the profile (spammer with P = spammer_share).

    `illegible`: both images are below the profile's legibility bar (see `pair_probabilities`).
    """
    honest = pair_probabilities(u_left, u_right, profile, illegible)
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


def perfect_credit(q: np.ndarray, ties: bool = True) -> np.ndarray:
    """Per unit, the best expected credit against answers q = (q_a, q_b, q_tie), shape (n, 3).

    ties=True: the best of predicting A, B or a tie, max(q_a, q_b, 1/2) + q_tie/2 (the module's
    `accuracy`); ties=False: the best of A and B, max(q_a, q_b) + q_tie/2 (`accuracy_no_ties`).
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
    best = np.maximum(q[:, 0], q[:, 1])
    if ties:
        best = np.maximum(best, 0.5)
    return best + 0.5 * q[:, 2]


def _pair_unit(
    u: Sequence[float], profile: RaterProfile, illegible: bool
) -> tuple[float, list[float]]:
    """(agreement, [q_a, q_b, q_tie]) of a pair task, left = A."""
    q = pair_answer_distribution(u[0], u[1], profile, illegible)
    agreement = sum(p * p for p in q.values())
    return agreement, [q["left"], q["right"], q["tie"] + q["both_bad"]]


def _rank_units(u: Sequence[float], profile: RaterProfile) -> tuple[list[float], list[list[float]]]:
    """(agreements, [q_a, q_b, q_tie] rows) of a rank task's implied pairs (i < j, i = A)."""
    above, tie = rank_pair_marginals(u, profile)
    s = profile.spammer_share
    agreements, rows = [], []
    for i, j in itertools.combinations(range(len(u)), 2):
        q = [(1 - s) * above[i, j] + s / 2, (1 - s) * above[j, i] + s / 2, (1 - s) * tie[i, j]]
        agreements.append(sum(p * p for p in q))
        rows.append(q)
    return agreements, rows


def agreement_ceiling(
    profile: RaterProfile, utilities_for_tasks: Iterable[tuple[Any, ...]]
) -> dict[str, dict[str, float | int | None]]:
    """Agreement and accuracy ceilings of the profile on tasks given as (kind, utilities).

    kind is "pair" (2 utilities, display order) or "rank" (k utilities); a pair task may carry a
    third item, whether both its images are illegible (`base_models.raters.both_illegible`). Returns
    {"pair": {...}, "rank": {...}, "overall": {...}}, each with n_tasks, n_units (pair tasks, or
    implied pairs of rank tasks), agreement, accuracy and accuracy_no_ties (see the module doc;
    None when there are no such tasks); "overall" weighs every unit equally.
    """
    agree: dict[str, list[float]] = {"pair": [], "rank": []}
    answers: dict[str, list[list[float]]] = {"pair": [], "rank": []}
    n_tasks = {"pair": 0, "rank": 0}
    for kind, u, *rest in utilities_for_tasks:
        u = [float(x) for x in u]
        if kind == "pair":
            if len(u) != 2:
                raise ArtalignError(f"a pair task needs 2 utilities, got {len(u)}")
            agreement, q = _pair_unit(u, profile, bool(rest and rest[0]))
            agree["pair"].append(agreement)
            answers["pair"].append(q)
        elif kind == "rank":
            agreements, rows = _rank_units(u, profile)
            agree["rank"] += agreements
            answers["rank"] += rows
        else:
            raise ArtalignError(f"task kind {kind!r} is not 'pair' or 'rank'")
        n_tasks[kind] += 1

    def summary(n: int, agreements: list[float], q: list[list[float]]) -> dict[str, Any]:
        def mean(x: Sequence[float] | np.ndarray) -> float | None:
            return float(np.mean(x)) if len(x) else None

        return {
            "n_tasks": n,
            "n_units": len(agreements),
            "agreement": mean(agreements),
            "accuracy": mean(perfect_credit(q)),
            "accuracy_no_ties": mean(perfect_credit(q, ties=False)),
        }

    return {
        "pair": summary(n_tasks["pair"], agree["pair"], answers["pair"]),
        "rank": summary(n_tasks["rank"], agree["rank"], answers["rank"]),
        "overall": summary(
            n_tasks["pair"] + n_tasks["rank"],
            agree["pair"] + agree["rank"],
            answers["pair"] + answers["rank"],
        ),
    }
