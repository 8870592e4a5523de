"""Reward functions for the alignment trainers, looked up by name (as ddpo-pytorch's rewards.py).

They live in the one reward registry (`evaluation.registry.REWARDS`), which the evaluation
harness reads too; this module is loaded through the `artalign.eval_plugins` entry point.

Every factory returns `reward_fn(images, prompts, metadata) -> (rewards, info)`: images a float
tensor (N, 3, H, W) in [0, 1], rewards a float32 CPU tensor (N,), info a dict of extra figures.
- `reward_model` (default): the learned reward model of `artalign reward train` (path=DIR).
- `clip_score`: zero-shot CLIP score of a CLIP folder (clip=DIR).
- `oracle_fidelity`: prompt fidelity read by the attribute oracle (oracle=DIR). Research use
  only: the oracle is an evaluation instrument, and a model trained on it is no longer judged
  fairly by it. It is labelled `research` in logs and metrics.
- `compressibility` / `incompressibility`: minus / plus the PNG size in kB, ddpo-pytorch's
  sanity rewards (a run on them must move quickly, whatever the images show).
- `brightness`: mean pixel value, the cheapest sanity reward.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.imaging import to_pil
from base_models.oracle import AttributeOracle
from base_models.oracle.fidelity import fidelity, parse_prompt
from base_models.oracle.reading import read_images
from base_models.registry import Entry
from evaluation.registry import REWARDS, register_reward
from rlhf.reward.baselines import clip_score_fn
from rlhf.reward.score import make_reward_fn

RewardFn = Callable[..., tuple[torch.Tensor, dict[str, Any]]]


def reward_names() -> list[str]:
    return REWARDS.names()


def reward_spec(name: str) -> Entry:
    """The reward's entry: `.obj` the factory, `.needs`, `.research`."""
    return REWARDS.entry(name)


def make_reward(name: str, **kwargs: Any) -> RewardFn:
    """The reward function `name`, built with the factory's keyword arguments."""
    return REWARDS.build(name, **kwargs)


def differentiable_rewards() -> list[str]:
    """Rewards whose reward_fn(differentiable=True) backpropagates to the images (DRaFT)."""
    return [n for n in reward_names() if REWARDS.entry(n).meta.get("differentiable")]


def make_differentiable_reward(name: str, **kwargs: Any) -> RewardFn:
    """`make_reward(name, differentiable=True)`, refusing a reward that has no gradient."""
    if not REWARDS.entry(name).meta.get("differentiable"):
        known = ", ".join(differentiable_rewards())
        raise ArtalignError(
            f"reward {name!r} is not differentiable, so it cannot be backpropagated (DRaFT); "
            f"use one of: {known} (or align with DDPO, which needs no gradient)"
        )
    return make_reward(name, differentiable=True, **kwargs)


@register_reward("reward_model", needs=("path",), differentiable=True)
def reward_model(
    path: str, device: str | None = None, differentiable: bool = False, **_: Any
) -> RewardFn:
    return make_reward_fn(path, device=device, differentiable=differentiable)


@register_reward("clip_score", needs=("clip",))
def clip_score(clip: str, **_: Any) -> RewardFn:
    score = clip_score_fn(clip)

    def reward_fn(images: torch.Tensor, prompts: Sequence[str], metadata: Any = None):
        rewards = score(to_pil(images), list(prompts)).float().cpu()
        return rewards, {"clip_score": float(rewards.mean())}

    return reward_fn


@register_reward("oracle_fidelity", research=True, needs=("oracle",))
def oracle_fidelity(oracle: str, **_: Any) -> RewardFn:
    model = AttributeOracle.load(oracle)

    def reward_fn(images: torch.Tensor, prompts: Sequence[str], metadata: Any = None):
        readings = read_images(model, images)
        values = [fidelity(r, parse_prompt(p))[0] for r, p in zip(readings, prompts, strict=True)]
        return torch.tensor(values, dtype=torch.float32), {"research": True}

    return reward_fn


def _png_kb(images: torch.Tensor) -> np.ndarray:
    sizes = []
    for im in to_pil(images):
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=False)
        sizes.append(buf.tell() / 1000.0)
    return np.asarray(sizes, dtype=np.float32)


@register_reward("compressibility")
def compressibility(**_: Any) -> RewardFn:
    def reward_fn(images: torch.Tensor, prompts: Sequence[str], metadata: Any = None):
        return torch.from_numpy(-_png_kb(images)), {}

    return reward_fn


@register_reward("incompressibility")
def incompressibility(**_: Any) -> RewardFn:
    def reward_fn(images: torch.Tensor, prompts: Sequence[str], metadata: Any = None):
        return torch.from_numpy(_png_kb(images)), {}

    return reward_fn


@register_reward("brightness", differentiable=True)
def brightness(differentiable: bool = False, **_: Any) -> RewardFn:
    def reward_fn(images: torch.Tensor, prompts: Sequence[str], metadata: Any = None):
        if differentiable:  # keeps the graph, on the images' device
            return images.float().mean(dim=(1, 2, 3)), {}
        return images.detach().float().mean(dim=(1, 2, 3)).cpu(), {}

    return reward_fn
