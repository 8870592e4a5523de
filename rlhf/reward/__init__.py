"""Reward models on preference judgments (docs/reward_model.md).

Public API: `RewardConfig` + `train_reward` (train), `load_reward_model` / `RewardModel.score`
(use), `make_reward_fn` (the alignment trainers' reward function), `PreferenceData` and its
loaders and `split_by_prompt` (data), the losses in `rlhf.reward.losses`.
"""

from rlhf.reward.config import RewardConfig
from rlhf.reward.data import Pair, PreferenceData, Ranking, split_by_prompt
from rlhf.reward.loaders import load_from_store, load_pickapic, load_preferences, load_rankings
from rlhf.reward.model import RewardModel, build_reward_model, load_reward_model
from rlhf.reward.score import make_reward_fn, score_folder
from rlhf.reward.train import train_reward

__all__ = [
    "Pair",
    "PreferenceData",
    "Ranking",
    "RewardConfig",
    "RewardModel",
    "build_reward_model",
    "load_from_store",
    "load_pickapic",
    "load_preferences",
    "load_rankings",
    "load_reward_model",
    "make_reward_fn",
    "score_folder",
    "split_by_prompt",
    "train_reward",
]
