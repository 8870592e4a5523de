"""The bootstrap behind every figure's CI: items, or whole prompts (the cluster bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from base_models.errors import ArtalignError
from evaluation.preference import reward_winrate
from evaluation.stats import Figure, bootstrap_ci, mean_figure, resample_indices

N_PROMPTS, N_SEEDS = 20, 8


def _agreeing_seeds() -> tuple[np.ndarray, list[str]]:
    """20 prompts x 8 seeds; every seed of a prompt scores the prompt's value (0 or 1)."""
    per_prompt = np.random.default_rng(3).integers(0, 2, N_PROMPTS).astype(np.float64)
    values = np.repeat(per_prompt, N_SEEDS)
    prompts = [f"prompt {i}" for i in range(N_PROMPTS) for _ in range(N_SEEDS)]
    return values, prompts


def _width(ci: tuple[float, float]) -> float:
    return ci[1] - ci[0]


def test_cluster_ci_is_wider_when_the_seeds_of_a_prompt_agree():
    values, prompts = _agreeing_seeds()
    items = bootstrap_ci(values, n_boot=2000)
    clustered = bootstrap_ci(values, n_boot=2000, groups=prompts)
    # 8 agreeing seeds carry the information of one: the interval widens by about sqrt(8)
    assert _width(clustered) > 2 * _width(items)
    # equal-size groups: resampling prompts is resampling the per-prompt means
    per_prompt = values[::N_SEEDS]
    assert clustered == pytest.approx(bootstrap_ci(per_prompt, n_boot=2000))


def test_one_item_per_group_is_the_item_bootstrap():
    x = np.random.default_rng(0).random(50)
    labels = [f"p{i}" for i in range(50)]
    assert bootstrap_ci(x, n_boot=300, seed=4, groups=labels) == bootstrap_ci(x, n_boot=300, seed=4)


def test_draws_take_whole_groups_of_unequal_size():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "b", "b", "c", "c"]
    for draw in resample_indices(len(labels), labels, 200, rng):
        picked = [labels[i] for i in draw]
        assert len(draw) in range(3, 10)  # 3 groups of 1-3 items
        assert picked.count("b") % 3 == 0 and picked.count("c") % 2 == 0
    with pytest.raises(ArtalignError, match="6 values but 2 group labels"):
        bootstrap_ci(np.zeros(6), groups=["a", "b"])


def test_counts_matrix_statistic_resamples_rows_by_group():
    """bias's path: a statistic of the pooled rows of an (N, K) counts matrix."""
    colours = np.random.default_rng(1).integers(0, 3, N_PROMPTS)
    counts = np.eye(3)[np.repeat(colours, N_SEEDS)]  # (160, 3): every seed draws its prompt's
    prompts = [f"p{i}" for i in range(N_PROMPTS) for _ in range(N_SEEDS)]

    def top_share(m: np.ndarray) -> float:
        total = m.sum(0)
        return float(total.max() / total.sum())

    clustered = bootstrap_ci(counts, top_share, 500, groups=prompts)
    # pooling whole prompts is pooling their summed rows: the same draws of prompts
    per_prompt = counts.reshape(N_PROMPTS, N_SEEDS, 3).sum(1)
    assert clustered == pytest.approx(bootstrap_ci(per_prompt, top_share, 500))
    assert _width(clustered) > 2 * _width(bootstrap_ci(counts, top_share, 500))


def test_mean_figure_records_the_prompts_it_resampled():
    values, prompts = _agreeing_seeds()
    fig = mean_figure(values, groups=prompts, n_boot=200)
    assert (fig.n, fig.n_clusters) == (N_PROMPTS * N_SEEDS, N_PROMPTS)
    assert fig.ci == bootstrap_ci(values, n_boot=200, groups=prompts)
    assert fig.to_dict()["n_clusters"] == N_PROMPTS
    plain = mean_figure(values, n_boot=200)
    assert plain.n_clusters is None and "n_clusters" not in plain.to_dict()
    old_keys = {"value": 1.0, "n": 3, "ci": [0.5, 1.5], "higher_is_better": True}
    assert Figure(1.0, 3, (0.5, 1.5), True).to_dict() == old_keys


def test_win_rate_resamples_prompts():
    """Pairs of one prompt win or lose together: the win-rate's CI is the prompts' one."""
    values, prompts = _agreeing_seeds()
    images_a = torch.tensor(values).view(-1, 1, 1, 1)
    images_b = torch.full_like(images_a, 0.5)

    def reward_fn(images, prompts, metadata):
        return images.view(-1), {}

    fig = reward_winrate(reward_fn, images_a, images_b, prompts, seed=2)
    assert fig.value == pytest.approx(values.mean()) and fig.n_clusters == N_PROMPTS
    assert fig.ci == bootstrap_ci(values, seed=2, groups=prompts)
    assert _width(fig.ci) > 2 * _width(bootstrap_ci(values, seed=2))
