"""The RL stage's reward: draw each rewrite with the generator, then score it for the user's prompt.

For a user prompt p and a rewrite r (Promptist's aesthetic-plus-relevance, with an intent term):
    image_weight * z(reward(images of r, p))          the image reward (default: the reward model)
  + relevance_weight * z(relevance(images of r, p))   CLIP score (or the oracle, research only)
  - keep_weight * (1 - kept_share(p, r))              what r drops or contradicts of p
z(.) puts a term in standard deviations over the call's batch, so the weights compare terms of
different scales (a CLIP score in logits, a reward model in its own units): a keep_weight of 4
makes dropping a quarter of the user's attributes cost as much as one standard deviation of
image reward.
Both image terms judge the images against the *user's* prompt, so a rewrite that draws something
else scores low even when its images are good. Every rewrite of one prompt in a call is drawn
with the same seeds, so GRPO's comparison within a group sees the prompts, not the noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlhf.align.rewards import make_reward, reward_spec
from rlhf.prompt.config import PromptConfig
from rlhf.prompt.keep import kept_share

_RELEVANCE_REWARD = {"clip": ("clip_score", "clip"), "oracle": ("oracle_fidelity", "oracle")}
_PATH_KEY = {"reward_model": "path", "clip_score": "clip", "oracle_fidelity": "oracle"}


def _prompt_seed(prompt: str, salt: int) -> int:
    digest = hashlib.blake2b(f"{salt}:{prompt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % 1_000_000_000


def _standard(x: np.ndarray) -> np.ndarray:
    """x in standard deviations from its batch mean (0 where the batch does not vary)."""
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-8 else np.zeros_like(x)


class RewriteReward:
    """A TRL reward function: `reward(prompts, completions, user_prompt, **kw) -> list[float]`."""

    __name__ = "rewrite_reward"  # TRL names its logged columns after the function

    def __init__(self, cfg: PromptConfig, generator: Any):
        self.cfg, self.generator = cfg, generator
        key = _PATH_KEY.get(cfg.reward)
        device = str(getattr(generator, "device", "cpu"))  # this process's device
        self.image_fn = make_reward(
            cfg.reward, device=device, **({key: cfg.reward_path} if key else {})
        )
        self.relevance_fn = None
        if cfg.relevance != "none":
            name, arg = _RELEVANCE_REWARD[cfg.relevance]
            self.relevance_fn = make_reward(name, **{arg: cfg.relevance_path})
        self.research = reward_spec(cfg.reward).research or cfg.relevance == "oracle"
        self.calls = 0

    def images(self, rewrites: Sequence[str], user_prompts: Sequence[str]) -> torch.Tensor:
        """(len(rewrites) * images_per_rewrite, 3, H, W); seeds shared by each user prompt."""
        k = self.cfg.images_per_rewrite
        salt = self.cfg.seed * 1_000_003 + self.calls
        texts = [r for r in rewrites for _ in range(k)]
        seeds = [_prompt_seed(p, salt) + j for p in user_prompts for j in range(k)]
        out = self.generator.sample(
            texts, seeds, steps=self.cfg.steps, guidance=self.cfg.guidance, batch_size=64
        )
        return out.pixels

    def score(
        self, rewrites: Sequence[str], user_prompts: Sequence[str]
    ) -> tuple[np.ndarray, dict[str, float]]:
        """(reward per rewrite, mean of each term)."""
        cfg, k = self.cfg, self.cfg.images_per_rewrite
        pixels = self.images(rewrites, user_prompts)
        repeated = [p for p in user_prompts for _ in range(k)]
        image, _ = self.image_fn(pixels, repeated, None)
        image = image.float().view(-1, k).mean(1).numpy()
        relevance = np.zeros_like(image)
        if self.relevance_fn is not None:
            rel, _ = self.relevance_fn(pixels, repeated, None)
            relevance = rel.float().view(-1, k).mean(1).numpy()
        kept = np.array([kept_share(p, r) for p, r in zip(user_prompts, rewrites, strict=True)])
        total = (
            cfg.image_weight * _standard(image)
            + cfg.relevance_weight * _standard(relevance)
            - cfg.keep_weight * (1.0 - kept)
        )
        parts = {
            "image": float(image.mean()),
            "relevance": float(relevance.mean()),
            "kept": float(kept.mean()),
            "kept_all": float((kept >= 1 - 1e-9).mean()),
        }
        return total, parts

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        user_prompt: Sequence[str],
        log_metric: Any = None,
        **_: Any,
    ) -> list[float]:
        self.calls += 1
        rewrites = [c.strip() for c in completions]
        total, parts = self.score(rewrites, user_prompt)
        if log_metric is not None:
            for name, value in parts.items():
                log_metric(f"rewrite/{name}", value)
        return [float(x) for x in total]
