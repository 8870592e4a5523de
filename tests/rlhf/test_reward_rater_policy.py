"""The rater policy (kappa flags and weights) is fitted on the training prompts only.

Raters a and b answer honestly everywhere; c reverses every answer on the held-out prompts only,
d on the training prompts only. Fitted on the training prompts, d is flagged and c weighs as
much as a; fitted on every prompt (what the loaders did by default), c's held-out answers would
flag c, so the test labels would decide whose judgments the model learns from.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from base_models.config import load_config
from base_models.errors import ArtalignError
from rlhf.reward.config import RewardConfig
from rlhf.reward.data import (
    Pair,
    PreferenceData,
    apply_rater_policy,
    fit_rater_policy,
    split_by_prompt,
)
from rlhf.reward.evaluate import evaluate_reward
from rlhf.reward.train import train_reward

LEVELS = (200, 50, 100, 150, 250, 0)  # pairs (0, 1), (2, 3), (4, 5): the lighter is A, B, A
PROMPTS = [f"prompt {i}" for i in range(20)]


def _png(level: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (level, level, level)).save(buf, format="PNG")
    return buf.getvalue()


def policy_data(train_prompts: set[str]) -> PreferenceData:
    """Three pairs per prompt judged by a, b, c, d (the lighter image wins; see the module doc)."""
    pairs = []
    for prompt in PROMPTS:
        for i in (0, 2, 4):
            honest = 1.0 if LEVELS[i] > LEVELS[i + 1] else 0.0
            for rater in "abcd":
                held_out = prompt not in train_prompts
                flip = (rater == "c" and held_out) or (rater == "d" and not held_out)
                pairs.append(Pair(prompt, i, i + 1, 1.0 - honest if flip else honest, rater))
    return PreferenceData([_png(v) for v in LEVELS], [f"gray {v}" for v in LEVELS], pairs)


def test_fit_rater_policy_reads_only_the_judgments_it_is_given():
    train_p = PROMPTS[:8]  # 24 units: enough overlap (min_shared 10) to judge every rater
    data = policy_data(set(train_p))
    policy = fit_rater_policy(data.subset(train_p), "flagged", rater_weights=True)
    assert policy.excluded == ("d",) and policy.fit_prompts == 8
    # kappas on the training prompts: a, b, c agree (1); d always disagrees, and with answers
    # 2/3 "left" against 1/3 its kappa with each is (0 - 4/9) / (1 - 4/9) = -0.8
    assert policy.weights == pytest.approx({"a": 0.4, "b": 0.4, "c": 0.4, "d": 0.05})
    everything = fit_rater_policy(data, "flagged", rater_weights=True)
    assert "c" in everything.excluded and everything.weights["c"] < everything.weights["a"]
    applied = policy.apply(data)
    assert {p.rater for p in applied.pairs} == {"a", "b", "c"}
    assert [p.weight for p in applied.pairs if p.rater == "c"] == pytest.approx([0.4] * 60)
    assert applied.source["excluded_raters"] == ["d"]
    assert applied.source["rater_policy_fit_prompts"] == 8
    assert fit_rater_policy(data, None).fit_prompts is None  # nothing read off the labels
    with pytest.raises(ArtalignError, match="'flagged', a list or None"):
        fit_rater_policy(data, "spammers")


def test_training_fits_the_policy_on_its_training_prompts(micro_clip, tmp_path):
    overrides = {
        "backbone": str(micro_clip),
        "head": "mlp",
        "test_frac": 0.5,
        "rater_weights": True,
    }
    cfg = load_config(RewardConfig, "micro", overrides=overrides)
    train_p = split_by_prompt(policy_data(set()), cfg.val_frac, cfg.test_frac, cfg.seed)[0]
    data = policy_data(set(train_p.prompts()))
    train_reward(cfg, data, tmp_path / "rm")
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert metrics["data"]["excluded_raters"] == ["d"]  # c's held-out answers are not read
    assert metrics["data"]["rater_policy_fit_prompts"] == len(train_p.prompts()) == 8
    weights = metrics["data"]["rater_weights"]
    assert weights["c"] == pytest.approx(weights["a"]) == pytest.approx(0.4)
    assert metrics["data"]["train"]["raters"] == 3
    config = json.loads((tmp_path / "rm" / "reward_config.json").read_text())
    assert config["data"]["excluded_raters"] == ["d"]
    # evaluation leaves out the raters training left out, and only those
    m = evaluate_reward(tmp_path / "rm", data, clip_baseline=False, n_boot=10)
    split = json.loads((tmp_path / "rm" / "split.json").read_text())
    assert m["data"]["excluded_raters"] == ["d"]
    assert m["scorers"]["reward_model"]["n"] == 3 * 3 * len(split["test_prompts"])
    # data whose policy was fitted on every prompt is refused, not filtered twice
    with pytest.raises(ArtalignError, match="fitted on all its prompts"):
        train_reward(cfg, apply_rater_policy(data, "flagged"), tmp_path / "rm2")
    assert not (tmp_path / "rm2").exists()
