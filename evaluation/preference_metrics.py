"""Preference metrics: the reward model's score, and win-rates of the model over the baseline.

- `reward_score` (aspect alignment): the mean reward of one model's images, via `ctx.reward_fn`
  (the reward model plugged in through `artalign.eval_plugins`), with a bootstrap CI over prompts;
- `reward_winrate` (aspect preference): share of matched pairs (same prompt, same seed) where the
  reward model scores the model's image above the baseline's, ties half;
- `rater_winrate` (aspect preference): the same judged by a simulated rater reading both images
  with the attribute oracle (`ctx.rater_profile`; without --rater, the default profile
  `base_models.raters.RaterProfile()`: mostly prompt fidelity, mild noise).
Win-rates read model B from `ctx.other`; the runner passes the baseline's samples there. Every CI
resamples prompts, each with all its seeds (`evaluation.stats`).
Each image's reward is computed once per run and kept on the context, so reward_score and
reward_winrate share it and the report can draw the reward distributions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.raters import RaterProfile, load_profile
from evaluation.context import EvalContext, Samples
from evaluation.preference import rater_winrate as rater_winrate_figure
from evaluation.preference import reward_winrate as reward_winrate_figure
from evaluation.registry import register_metric
from evaluation.stats import Figure, mean_figure

_REWARDS = "_reward_values"  # ctx.__dict__ key: {samples.model: per-image rewards}


def _pair(
    ctx: EvalContext, samples: Samples, on: str | None, metric: str
) -> tuple[Samples, Samples]:
    """(A, B): this model's and the baseline's samples of `on`, checked to be matched pairs."""
    if ctx.other is None:
        raise ArtalignError(f"{metric} needs --baseline: a second model to compare with")
    a, b = samples.of_set(on, metric), ctx.other.of_set(on, metric)
    if a.prompts != b.prompts or a.seeds != b.seeds:
        raise ArtalignError(
            f"{metric}: the two models' samples are not matched pairs (prompts or seeds differ); "
            "sample both with the same suite and seed"
        )
    return a, b


def reward_values(ctx: EvalContext, samples: Samples) -> np.ndarray:
    """Each image's reward under `ctx.reward_fn`, computed once per (run, model)."""
    cache: dict[str, tuple[Samples, np.ndarray]] = ctx.__dict__.setdefault(_REWARDS, {})
    key = samples.model or "model"
    hit = cache.get(key)
    if hit is not None and hit[0].seeds == samples.seeds and hit[0].prompts == samples.prompts:
        return hit[1]
    rewards, _ = ctx.reward_fn(samples.images, list(samples.prompts), None)
    values = np.asarray(torch.as_tensor(rewards, dtype=torch.float64).cpu(), dtype=np.float64)
    if values.shape != (len(samples),):
        raise ArtalignError(
            f"the reward function returned {values.shape} rewards for {len(samples)} images"
        )
    cache[key] = (samples, values)
    return values


def reward_distributions(ctx: EvalContext) -> dict[str, list[float]]:
    """Per-image rewards of every model scored in this run (for the report's histograms)."""
    cache = ctx.__dict__.get(_REWARDS, {})
    return {model: [float(v) for v in values] for model, (_, values) in cache.items()}


def _subset_rewards(ctx: EvalContext, samples: Samples, on: str | None) -> np.ndarray:
    values = reward_values(ctx, samples)
    return values[np.array(samples.set_mask(on, "reward"))]


@register_metric("reward_score", aspect="alignment", higher_is_better=True)
def reward_score(ctx: EvalContext, samples: Samples, on: str | None = None) -> dict[str, Figure]:
    """Mean reward-model score of the images (with a bootstrap CI over prompts)."""
    values = _subset_rewards(ctx, samples, on)
    prompts = samples.of_set(on, "reward_score").prompts
    return {"reward": mean_figure(values, True, ctx.n_boot, ctx.seed, groups=prompts)}


@register_metric("reward_winrate", aspect="preference", higher_is_better=True)
def reward_winrate(ctx: EvalContext, samples: Samples, on: str | None = None) -> dict[str, Figure]:
    """Share of matched pairs where the reward model prefers the model's image (ties half)."""
    a, b = _pair(ctx, samples, on, "reward_winrate")
    r_a, r_b = _subset_rewards(ctx, samples, on), _subset_rewards(ctx, ctx.other, on)
    lookup = {id(a.images): r_a, id(b.images): r_b}

    def cached_fn(images: Any, prompts: list[str], metadata: Any) -> tuple[np.ndarray, dict]:
        return lookup[id(images)], {}

    fig = reward_winrate_figure(cached_fn, a.images, b.images, a.prompts, seed=ctx.seed)
    return {"reward_winrate": fig}


@register_metric("rater_winrate", aspect="preference", higher_is_better=True)
def rater_winrate(
    ctx: EvalContext, samples: Samples, on: str | None = None, profile: str | None = None
) -> dict[str, Figure]:
    """Share of matched pairs a simulated rater prefers the model's image (ties half)."""
    a, b = _pair(ctx, samples, on, "rater_winrate")
    if profile is not None:
        rater = load_profile(profile)
    elif ctx.rater_profile_path is not None:
        rater = ctx.rater_profile
    else:
        rater = RaterProfile(name="default")
    fig = rater_winrate_figure(ctx.oracle, rater, a.images, b.images, a.prompts, seed=ctx.seed)
    return {"rater_winrate": fig}
