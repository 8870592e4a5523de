"""Diffusion-DPO's training data: preference pairs as (winner, loser) latents and a prompt.

Judgments come from a label store, a Pick-a-Pic parquet or JSONL rankings (the `rlhf.reward`
loaders, with their gold / both-bad / rater policies); a k-way ranking counts as its k(k-1)/2
implied pairs. A decisive pair becomes one item, winner first, at its judgment's weight. A tie
(p = 0.5) is dropped (`ties="drop"`), or kept (`ties="weight"`) as two items, one in each order,
each at weight tie_weight / 2 (p = 0.5 in both orders): the sum of the two losses is smallest
when the model's error gap between the images equals the reference's, so a tie holds the pair
where the base model had it instead of pushing it either way.

The data are split by prompt (held-out prompts for evaluation), every used image is encoded once
to its VAE latent after resizing to the generator's resolution, and every prompt once to its text
states; all of it stays in memory (CPU), so a training step costs only UNet forwards. The latent
is the posterior mean times the scaling factor. The reference scripts (diffusers'
`train_diffusion_dpo.py`, the Diffusion-DPO repository) instead draw a sample of the posterior
at every step; with latents encoded once, a single draw would freeze one arbitrary perturbation
into the data, so the mean is used: the image's own latent, the same at every step.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.imaging import square_crop
from rlhf.reward.data import PreferenceData, split_by_prompt, training_rater_policy
from rlhf.reward.loaders import load_preferences

Log = Callable[[str], None]


@dataclass(frozen=True)
class DPOPair:
    """One training item: image indices (into PreferenceData.images) of winner and loser."""

    prompt: str
    winner: int
    loser: int
    weight: float
    tie: bool = False


def preference_pairs(
    data: PreferenceData, ties: str = "drop", tie_weight: float = 0.5
) -> list[DPOPair]:
    """The pairs and rankings' implied pairs of `data` as DPO items (see the module docstring)."""
    if ties not in ("drop", "weight"):
        raise ArtalignError(f"ties={ties!r} is unknown; choose drop or weight")
    out: list[DPOPair] = []
    for p in data.all_pairs():
        if p.image_a == p.image_b:
            continue  # the same image twice carries no preference
        if p.p_a == 0.5:
            if ties == "weight":
                w = p.weight * tie_weight / 2
                out.append(DPOPair(p.prompt, p.image_a, p.image_b, w, True))
                out.append(DPOPair(p.prompt, p.image_b, p.image_a, w, True))
        elif p.p_a > 0.5:
            out.append(DPOPair(p.prompt, p.image_a, p.image_b, p.weight))
        else:
            out.append(DPOPair(p.prompt, p.image_b, p.image_a, p.weight))
    return out


@dataclass
class PairTensors:
    """Items as tensors: winner / loser rows of `DPOData.latents`, prompt rows, weight, tie."""

    winner: torch.Tensor  # (n,) long
    loser: torch.Tensor  # (n,) long
    prompt: torch.Tensor  # (n,) long
    weight: torch.Tensor  # (n,) float32
    tie: torch.Tensor  # (n,) bool

    def __len__(self) -> int:
        return len(self.winner)

    def take(self, index: torch.Tensor) -> PairTensors:
        return PairTensors(
            self.winner[index],
            self.loser[index],
            self.prompt[index],
            self.weight[index],
            self.tie[index],
        )


@dataclass
class DPOData:
    """Latents (M, C, h, w) and text states (P, T, D), cached; train and held-out items."""

    latents: torch.Tensor
    embeds: torch.Tensor
    prompts: list[str]
    train: PairTensors
    heldout: PairTensors
    heldout_prompts: list[str]
    summary: dict[str, Any]


def image_size(generator: Any) -> int:
    """The side in pixels of the generator's images (UNet sample size x VAE factor)."""
    return int(generator.unet.config.sample_size) * int(generator.vae_scale_factor)


@torch.no_grad()
def encode_images(generator: Any, images: Sequence[Any], batch_size: int = 64) -> torch.Tensor:
    """PIL images -> VAE latents (N, C, h, w) float32 on the CPU: posterior mean x scale.

    Each image is resized (shorter side, bicubic) and centre-cropped to the generator's size.
    """
    size, vae = image_size(generator), generator.vae
    dtype = next(vae.parameters()).dtype
    scale = float(vae.config.scaling_factor)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.stack([square_crop(im, size) for im in images[start : start + batch_size]])
        x = torch.from_numpy(chunk).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (b, 3, H, W)
        posterior = vae.encode(x.to(generator.device, dtype)).latent_dist
        out.append((posterior.mean * scale).float().cpu())
    return torch.cat(out)


def _tensors(items: list[DPOPair], row: dict[int, int], prompt_row: dict[str, int]) -> PairTensors:
    return PairTensors(
        winner=torch.tensor([row[i.winner] for i in items], dtype=torch.long),
        loser=torch.tensor([row[i.loser] for i in items], dtype=torch.long),
        prompt=torch.tensor([prompt_row[i.prompt] for i in items], dtype=torch.long),
        weight=torch.tensor([i.weight for i in items], dtype=torch.float32),
        tie=torch.tensor([i.tie for i in items], dtype=torch.bool),
    )


def check_preferences(data: PreferenceData) -> None:
    """ArtalignError for data DPO cannot learn from: no judgments, or no decisive pair."""
    where = data.source.get("path", "the preference data")
    if len(data) == 0:
        raise ArtalignError(
            f"no usable judgments in {where} (after leaving out gold tasks, "
            "both-bad answers and flagged raters); label some images first"
        )
    if not any(not i.tie for i in preference_pairs(data, "drop")):
        raise ArtalignError(
            f"no decisive pairs in {where}: every judgment is a tie, so there "
            "is no preference to learn; collect judgments that pick a winner"
        )


def build_dpo_data(
    data: PreferenceData, generator: Any, cfg: Any, log: Log | None = None
) -> DPOData:
    """Split `data` by prompt, make the DPO items, encode their images and prompts once.

    `cfg` is a DPOConfig (ties, tie_weight, heldout_frac, max_pairs, encode_batch_size, seed).
    ArtalignError for data without decisive pairs (in all, or among the training prompts).
    """
    check_preferences(data)
    where = data.source.get("path", "the preference data")
    if cfg.heldout_frac > 0:
        train_data, _, held_data = split_by_prompt(
            data, val=0.0, test=cfg.heldout_frac, seed=cfg.seed
        )
    else:
        train_data, held_data = data, data.subset([])
    # flagged raters and rater weights come from the training prompts' judgments only
    policy = training_rater_policy(cfg, data, train_data, log)
    if policy is not None:
        train_data, held_data = policy.apply(train_data), policy.apply(held_data)
    train = preference_pairs(train_data, cfg.ties, cfg.tie_weight)
    heldout = preference_pairs(held_data, "drop")  # decisive pairs only
    if not any(not i.tie for i in train):
        raise ArtalignError(
            f"the training prompts of {where} have no decisive pairs; label "
            "more prompts or lower heldout_frac"
        )
    if cfg.max_pairs is not None and len(train) > cfg.max_pairs:
        train = random.Random(cfg.seed).sample(train, cfg.max_pairs)
    if cfg.eval_pairs and len(heldout) > cfg.eval_pairs:
        heldout = random.Random(cfg.seed + 1).sample(heldout, cfg.eval_pairs)
    used = sorted({i for item in train + heldout for i in (item.winner, item.loser)})
    row = {image: n for n, image in enumerate(used)}
    prompts = sorted({i.prompt for i in train + heldout})
    prompt_row = {p: n for n, p in enumerate(prompts)}
    if log:
        log(
            f"encoding {len(used)} images and {len(prompts)} prompts "
            f"({len(train)} training items, {len(heldout)} held-out pairs)"
        )
    latents = []
    step = max(cfg.encode_batch_size, 1)
    for start in range(0, len(used), step):  # decode a chunk at a time: bounded memory
        images = [data.load_image(i) for i in used[start : start + step]]
        latents.append(encode_images(generator, images, step))
    embeds = torch.cat(
        [
            generator.encode_prompts(prompts[s : s + step]).float().cpu()
            for s in range(0, len(prompts), step)
        ]
    )
    n_ties = sum(i.tie for i in train)
    summary = {
        "source": str(where),
        **{f"judgments_{k}": v for k, v in data.summary().items()},
        "train_prompts": len(train_data.prompts()),
        "heldout_prompts": len(held_data.prompts()),
        "train_items": len(train),
        "train_decisive": len(train) - n_ties,
        "train_tie_items": n_ties,
        "ties": cfg.ties,
        "heldout_pairs": len(heldout),
        "images_encoded": len(used),
        "dropped": data.source.get("dropped", {}),
        "excluded_raters": train_data.source.get("excluded_raters", []),
    }
    return DPOData(
        latents=torch.cat(latents) if latents else torch.empty(0),
        embeds=embeds,
        prompts=prompts,
        train=_tensors(train, row, prompt_row),
        heldout=_tensors(heldout, row, prompt_row),
        heldout_prompts=held_data.prompts(),
        summary=summary,
    )


def read_preferences(source: str | Path, cfg: Any, batch: str | None = None) -> PreferenceData:
    """The judgments of a label store (.db), Pick-a-Pic .parquet or .jsonl rankings, checked."""
    source = Path(source)
    extra = {"batch": batch} if batch is not None else {}
    if batch is not None and source.suffix in (".parquet", ".jsonl"):
        raise ArtalignError("a batch selects part of a label store; a file has no batches")
    data = load_preferences(
        source, include_gold=cfg.include_gold, both_bad=cfg.both_bad, check=False, **extra
    )
    check_preferences(data)
    return data


def load_dpo_data(
    source: str | Path, generator: Any, cfg: Any, batch: str | None = None, log: Log | None = None
) -> DPOData:
    """`read_preferences` then `build_dpo_data`."""
    return build_dpo_data(read_preferences(source, cfg, batch), generator, cfg, log)
