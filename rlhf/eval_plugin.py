"""Registers the reward model with the evaluation harness (`artalign.eval_plugins` entry point).

`evaluation` does not import `rlhf`; it finds the reward model's loader here by name.
"""

from __future__ import annotations

from evaluation.registry import register_reward_loader
from rlhf.reward.score import make_reward_fn

register_reward_loader("reward_model")(make_reward_fn)
