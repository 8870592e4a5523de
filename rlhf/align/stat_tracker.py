"""Per-prompt reward statistics for DDPO's advantages (as ddpo-pytorch's stat tracking).

Each prompt keeps a buffer of its most recent rewards; an image's advantage is its reward minus
its prompt's buffer mean, over the buffer's std. A prompt seen fewer than `min_count` times is
normalised with the statistics of the whole batch instead, so early epochs and rare prompts
still get a sensible scale.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np


class PerPromptStatTracker:
    """Rewards per prompt in a bounded buffer; `update` returns the batch's advantages."""

    def __init__(self, buffer_size: int = 32, min_count: int = 16) -> None:
        if buffer_size < 1 or min_count < 1:
            raise ValueError("buffer_size and min_count must be >= 1")
        self.buffer_size, self.min_count = buffer_size, min_count
        self.buffers: dict[str, deque[float]] = {}

    def update(self, prompts: Sequence[str], rewards: np.ndarray) -> np.ndarray:
        """Add the batch's rewards, then normalise each against its prompt (or the batch)."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(prompts) != len(rewards):
            raise ValueError(f"{len(prompts)} prompts for {len(rewards)} rewards")
        advantages = np.empty_like(rewards)
        batch_mean, batch_std = rewards.mean(), rewards.std() + 1e-6
        for prompt in dict.fromkeys(prompts):
            mask = np.array([p == prompt for p in prompts])
            buf = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
            buf.extend(rewards[mask].tolist())
            if len(buf) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                mean, std = np.mean(buf), np.std(buf) + 1e-6
            advantages[mask] = (rewards[mask] - mean) / std
        return advantages

    def stats(self) -> dict[str, float]:
        counts = [len(b) for b in self.buffers.values()]
        return {"prompts": len(counts), "mean_count": float(np.mean(counts)) if counts else 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer_size": self.buffer_size,
            "min_count": self.min_count,
            "buffers": {p: list(b) for p, b in self.buffers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer_size, self.min_count = state["buffer_size"], state["min_count"]
        self.buffers = {p: deque(v, maxlen=self.buffer_size) for p, v in state["buffers"].items()}
