"""The alignment losses and the stat tracker on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlhf.align.losses import diffusion_dpo_loss, kl_to_reference, ppo_clip_loss
from rlhf.align.stat_tracker import PerPromptStatTracker


def test_ppo_clip_by_hand():
    # ratios 1.5 and 0.5, clip range 0.2, advantages +1 and -1:
    # sample 1: max(-1.5, -1.2) = -1.2; sample 2: max(0.5, 0.8) = 0.8; mean -0.2
    old = torch.zeros(2)
    new = torch.log(torch.tensor([1.5, 0.5]))
    loss, info = ppo_clip_loss(new, old, torch.tensor([1.0, -1.0]), 0.2)
    assert loss.item() == pytest.approx(-0.2, abs=1e-6)
    assert info["clipfrac"].item() == 1.0
    assert info["ratio"].item() == pytest.approx(1.0)
    assert info["approx_kl"].item() == pytest.approx(
        0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2
    )


def test_ppo_clip_at_ratio_one_is_minus_advantage_and_has_policy_gradient():
    # the old DDPO test of TRL: ratio 1, advantage 1 -> loss -1; the gradient is -A per sample
    new = torch.zeros(3, requires_grad=True)
    loss, info = ppo_clip_loss(new, torch.zeros(3), torch.tensor([1.0, 2.0, -3.0]), 1e-4)
    assert loss.item() == pytest.approx(0.0)  # mean of -1, -2, +3
    loss.backward()
    torch.testing.assert_close(new.grad, torch.tensor([-1.0, -2.0, 3.0]) / 3)
    assert info["clipfrac"].item() == 0.0


def test_ppo_clip_stops_the_gradient_outside_the_range():
    new = torch.log(torch.tensor([2.0])).requires_grad_(True)
    loss, _ = ppo_clip_loss(new, torch.zeros(1), torch.tensor([1.0]), 0.2)
    loss.backward()
    assert loss.item() == pytest.approx(-1.2)
    assert new.grad.item() == 0.0  # clipped: a positive advantage gains nothing past 1 + ε


def test_diffusion_dpo_by_hand():
    # model moved toward the winner by 1 more than the reference: inside = -β/2 · (-1) = 1
    loss, info = diffusion_dpo_loss(
        torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([1.5]), torch.tensor([1.5]), beta=2.0
    )
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)))
    assert info["implicit_acc"].item() == 1.0
    assert info["margin"].item() == pytest.approx(-1.0)


def test_diffusion_dpo_at_the_reference_is_log2_and_weights_average():
    e = torch.tensor([0.3, 0.7])
    loss, info = diffusion_dpo_loss(e, e.flip(0), e, e.flip(0), beta=5000.0)
    assert loss.item() == pytest.approx(math.log(2.0))
    assert info["implicit_acc"].item() == 0.0
    # weighted mean: the zero-weight pair does not count
    loss_w, _ = diffusion_dpo_loss(
        torch.tensor([1.0, 0.0]),
        torch.tensor([2.0, 0.0]),
        torch.tensor([1.5, 0.0]),
        torch.tensor([1.5, 5.0]),
        beta=2.0,
        weight=torch.tensor([1.0, 0.0]),
    )
    assert loss_w.item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_kl_to_reference_by_hand():
    mean = torch.zeros(2, 1, 2, 2)
    mean[0, 0, 0, 0] = 1.0
    kl = kl_to_reference(mean, torch.zeros_like(mean), torch.tensor(0.5))
    torch.testing.assert_close(kl, torch.tensor([0.5, 0.0]))  # 1 / (2 · 0.25) over 4 dims
    assert kl_to_reference(mean, torch.zeros_like(mean), torch.tensor(0.0)).sum() == 0


def test_stat_tracker_per_prompt_and_batch_fallback():
    tracker = PerPromptStatTracker(buffer_size=4, min_count=2)
    adv = tracker.update(["a", "a", "b"], np.array([1.0, 3.0, 10.0]))
    # "a" has 2 rewards (mean 2, std 1); "b" has 1 < min_count: batch stats (mean 14/3)
    batch = np.array([1.0, 3.0, 10.0])
    assert adv[:2] == pytest.approx([-1.0, 1.0], abs=1e-5)
    assert adv[2] == pytest.approx((10 - batch.mean()) / batch.std(), abs=1e-5)
    # the buffer keeps the last 4: a = [1, 3, 5, 7] after two more, mean 4
    adv = tracker.update(["a", "a"], np.array([5.0, 7.0]))
    assert adv == pytest.approx((np.array([5.0, 7.0]) - 4.0) / np.std([1, 3, 5, 7]), abs=1e-5)
    tracker.update(["a"], np.array([9.0]))
    assert list(tracker.buffers["a"]) == [3.0, 5.0, 7.0, 9.0]
    copy = PerPromptStatTracker()
    copy.load_state_dict(tracker.state_dict())
    assert {k: list(v) for k, v in copy.buffers.items()} == {
        k: list(v) for k, v in tracker.buffers.items()
    }
    assert copy.buffers["a"].maxlen == 4
