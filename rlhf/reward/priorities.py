"""Active selection: ask raters first about what the reward model is least sure of.

A task's doubt is the mean, over its pairs (a ranking's implied pairs), of 1 - |2 p - 1| with
p = sigmoid(r_a - r_b) the model's Bradley-Terry probability that A wins: 1 for a coin flip, 0
for a certain pair (uncertainty sampling by margin; Settles 2009, "Active Learning Literature
Survey", section 3.1). `prioritise` writes each open task's doubt into the label store as its
priority, and the app's `order=uncertain` serves the highest first. `select_uncertain` picks
judgments the same way from a pool, for learning curves (benchmarks/active_selection.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from base_models.errors import ArtalignError
from labeling_app.store import Store
from rlhf.reward.data import PreferenceData

Scorer = Callable[[list[Image.Image], list[str]], Sequence[float]]


def doubt(rewards: Sequence[float]) -> float:
    """Mean 1 - |2 sigmoid(r_i - r_j) - 1| over the pairs of a task's rewards (0..1)."""
    pairs = list(itertools.combinations([float(r) for r in rewards], 2))
    if not pairs:
        raise ArtalignError("a task needs at least two images to be in doubt about")
    return sum(1.0 - abs(math.tanh(0.5 * (a - b))) for a, b in pairs) / len(pairs)


def scorer_of(reward_fn: Any) -> Scorer:
    """A Scorer from a reward_fn(images, prompts, metadata) -> (rewards, info)."""

    def score(images: list[Image.Image], prompts: list[str]) -> list[float]:
        with torch.no_grad():
            rewards, _ = reward_fn(images, prompts, None)
        return [float(r) for r in rewards]

    return score


def rewards_of(
    ids: Sequence[int], load: Callable[[int], Image.Image], prompt_of: dict[int, str], score: Scorer
) -> dict[int, float]:
    """Image id -> reward, scoring 256 images at a time; `load(id)` gives the image."""
    rewards: dict[int, float] = {}
    for start in range(0, len(ids), 256):
        chunk = list(ids[start : start + 256])
        images = [load(i) for i in chunk]
        rewards.update(zip(chunk, score(images, [prompt_of[i] for i in chunk]), strict=True))
    return rewards


def prioritise(store: Store, score: Scorer, batch_id: int | None = None) -> dict[str, Any]:
    """Set every open task's priority to the model's doubt about it; return a summary.

    Open: fewer live judgments than its overlap. Each image is scored once.
    """
    tasks = [t for t in store.tasks(batch_id) if t.done < t.overlap and t.gold is None]
    if not tasks:
        return {"n_tasks": 0, "mean_doubt": None}
    path_of = {i: p for t in tasks for i, p in zip(t.image_ids, t.image_paths, strict=True)}
    prompt_of = {i: t.prompt for t in tasks for i in t.image_ids}

    def load(i: int) -> Image.Image:
        try:
            with Image.open(path_of[i]) as im:
                return im.convert("RGB")
        except OSError as e:
            raise ArtalignError(f"image {i} ({path_of[i]}) cannot be read: {e}") from e

    rewards = rewards_of(sorted(path_of), load, prompt_of, score)
    priorities = {t.task_id: doubt([rewards[i] for i in t.image_ids]) for t in tasks}
    store.set_priorities(priorities)
    values = list(priorities.values())
    return {"n_tasks": len(values), "mean_doubt": sum(values) / len(values)}


def select_uncertain(
    pool: PreferenceData, chosen: PreferenceData, n: int, score: Scorer
) -> PreferenceData:
    """`chosen` plus the `n` judgments of `pool` not in it that the model doubts most."""
    taken = {id(j) for j in [*chosen.pairs, *chosen.rankings]}
    units = [("p", p) for p in pool.pairs if id(p) not in taken]
    units += [("r", r) for r in pool.rankings if id(r) not in taken]
    prompt_of = {i: u.prompt for _, u in units for i in _images(u)}
    rewards = rewards_of(sorted(prompt_of), pool.load_image, prompt_of, score)
    ranked = sorted(units, key=lambda u: -doubt([rewards[i] for i in _images(u[1])]))[:n]
    return chosen.with_judgments(
        [*chosen.pairs, *(u for k, u in ranked if k == "p")],
        [*chosen.rankings, *(u for k, u in ranked if k == "r")],
    )


def _images(unit: Any) -> tuple[int, ...]:
    return (unit.image_a, unit.image_b) if hasattr(unit, "image_a") else tuple(unit.images)
