"""What a reward model is compared with: zero-shot CLIP score, random scores, and the ceiling.

Every baseline is a scoring function `score_fn(images, prompts) -> torch.Tensor (N,)`, the same
signature as `RewardModel.score`, so `evaluate` measures them all through one code path.
- CLIP score: exp(logit_scale) x cosine of the backbone's image and text embeddings, i.e. the
  logit CLIP itself would use to pick between two images for a prompt (Radford et al. 2021;
  Hessel et al.'s CLIPScore is the same cosine, rescaled). Accuracy does not depend on the
  scale; calibration does, and CLIP's own scale is the natural one.
- random: a seeded normal score per image, derived from the image's pixels, so the same image
  gets the same score in every pair (expected accuracy 0.5 on strict pairs).
- simulated raters: each image's hidden utility as the simulator computes it (the oracle's
  reading, `base_models.raters.utility`), each pair's answer distribution (q_a, q_b, q_tie)
  from `base_models.rater_ceiling`, and from those any scorer's expected credit (the analytic
  ceiling is `base_models.rater_ceiling.perfect_credit` of the same rows). With known spammers
  (the simulator's metrics) a spammer's judgment is a coin flip (ceiling 0.5) and the others
  are honest raters (spammer share 0); otherwise the profile's mix is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from base_models.errors import ArtalignError
from base_models.rater_ceiling import pair_answer_distribution, rank_pair_marginals
from evaluation.preference import rater_utilities
from rlhf.reward.backbones import load_backbone

ScoreFn = Callable[[Sequence[Image.Image], Sequence[str]], torch.Tensor]


def clip_score_fn(
    backbone: str | Path,
    kind: str = "artalign",
    pretrained: str | Path | None = None,
    batch_size: int = 256,
) -> ScoreFn:
    """Zero-shot CLIP score of a backbone (any kind `rlhf.reward.backbones` loads)."""
    bb = load_backbone(backbone, kind, pretrained)
    scale = float(bb.init_logit_scale)

    @torch.no_grad()
    def score(images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        if len(images) != len(prompts):
            raise ArtalignError(f"CLIP score got {len(images)} images but {len(prompts)} prompts")
        unique = list(dict.fromkeys(prompts))
        txt = F.normalize(bb.encode_text(bb.tokenize(unique)).float(), dim=-1)
        where = {p: i for i, p in enumerate(unique)}
        out = []
        for s in range(0, len(images), batch_size):
            img = F.normalize(bb.encode_image(bb.preprocess(images[s : s + batch_size])), dim=-1)
            idx = torch.tensor([where[p] for p in prompts[s : s + batch_size]])
            out.append(scale * (img.float() * txt[idx]).sum(-1))
        return torch.cat(out) if out else torch.zeros(0)

    return score


def random_score_fn(seed: int = 0) -> ScoreFn:
    """Seeded random scores: one standard-normal draw per distinct image (by its pixels)."""

    def score(images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        values = []
        for im in images:
            digest = hashlib.sha256(im.convert("RGB").tobytes()).digest()
            key = int.from_bytes(digest[:8], "little")
            values.append(np.random.default_rng([seed, key]).standard_normal())
        return torch.tensor(values, dtype=torch.float32)

    return score


def oracle_utilities(
    oracle: Any, profile: Any, images: Sequence[Image.Image], prompts: Sequence[str]
) -> np.ndarray:
    """The profile's hidden utility of each (image, prompt), as the simulated raters compute it."""
    return rater_utilities(oracle, profile, list(images), prompts)


def answer_probabilities(
    profile: Any, kind: str, utilities: Sequence[float], spammer: bool = False
) -> np.ndarray:
    """(q_a, q_b, q_tie) of one rater of `profile` for each pair (i < j) of one task.

    A pair task has one pair (left = A); a rank task has its k(k-1)/2 implied pairs, from the
    exact Plackett-Luce marginals of `base_models.rater_ceiling`. "Both bad" counts as a
    tie, as in the ceiling. `spammer`: the rater is a known spammer (a coin flip). Otherwise the
    rater is drawn from `profile`'s mix; pass a profile with spammer_share 0 for a known honest
    rater.
    """
    import itertools

    if spammer:
        n = 1 if kind == "pair" else len(utilities) * (len(utilities) - 1) // 2
        return np.tile([0.5, 0.5, 0.0], (n, 1))
    if kind == "pair":
        q = pair_answer_distribution(float(utilities[0]), float(utilities[1]), profile)
        return np.array([[q["left"], q["right"], q["tie"] + q["both_bad"]]])
    above, tie = rank_pair_marginals(utilities, profile)
    s = profile.spammer_share
    rows = [
        [(1 - s) * above[i, j] + s / 2, (1 - s) * above[j, i] + s / 2, (1 - s) * tie[i, j]]
        for i, j in itertools.combinations(range(len(utilities)), 2)
    ]
    return np.asarray(rows, dtype=np.float64)


def expected_credit(q: np.ndarray, diff: Any, tau: float = 0.0) -> np.ndarray:
    """Expected credit (PickScore tie rule) of predictions `diff` = s_a - s_b against answers
    drawn from q = (q_a, q_b, q_tie) per pair: the accuracy without label-sampling noise."""
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    q = np.asarray(q, dtype=np.float64).reshape(-1, 3)
    pred_tie = (np.abs(d) < tau) | (d == 0)
    pick = np.where(d > 0, q[:, 0], q[:, 1]) + 0.5 * q[:, 2]
    return np.where(pred_tie, q[:, 2] + 0.5 * (q[:, 0] + q[:, 1]), pick)
