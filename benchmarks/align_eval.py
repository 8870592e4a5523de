"""What the alignment benchmarks measure on base vs aligned samples, in one place.

Base and aligned images are drawn for the same held-out prompts with the same seeds, so every
comparison is paired; every CI is a bootstrap over prompts (all seeds of a prompt together).
- `paired_samples`: base (adapters off) and aligned pixels of prompts x seeds;
- `oracle_fidelity`: the attribute oracle's prompt fidelity of each image;
- `fid_drift`: FID of base and aligned against real images in the CLIP image tower's features;
- `paired_gain`: mean aligned - base of a per-image figure, in units of the base's std, with CI;
- `before_after_grid`: a PNG, base row above aligned row, the first seed of the first prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.clip.features import ClipImageFeatures
from base_models.generator import Generator
from base_models.generator.evaluate import clip_fid
from base_models.imaging import make_grid, to_pil
from base_models.io_utils import atomic_path
from base_models.oracle.fidelity import fidelity, parse_prompt
from base_models.oracle.reading import read_images
from evaluation.stats import bootstrap_ci
from rlhf.align.guard import load_reference

EVAL_SEED0 = 500_000  # evaluation seeds: disjoint from training and guard seeds


def read_lines(path: Path) -> list[str]:
    return [ln for ln in Path(path).read_text().splitlines() if ln.strip()]


def paired_samples(
    model: Path, lora: Path, prompts: list[str], seeds_per_prompt: int, **sampling: Any
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(flat prompts, base pixels, aligned pixels): each prompt with `seeds_per_prompt` seeds,
    the same seeds for both models; `sampling` is steps / guidance / eta of `Generator.sample`."""
    flat = [p for p in prompts for _ in range(seeds_per_prompt)]
    seeds = [EVAL_SEED0 + i for i in range(len(flat))]
    gen = Generator.from_folder(model)
    base = gen.sample(flat, seeds, batch_size=64, **sampling).pixels
    gen.attach_lora(lora)
    aligned = gen.sample(flat, seeds, batch_size=64, **sampling).pixels
    return flat, base, aligned


def oracle_fidelity(oracle: Any, pixels: torch.Tensor, prompts: list[str]) -> np.ndarray:
    """Per-image prompt fidelity read by the attribute oracle (share of stated attributes met)."""
    readings = read_images(oracle, pixels)
    return np.array(
        [fidelity(r, parse_prompt(p))[0] for r, p in zip(readings, prompts, strict=True)]
    )


def fid_drift(
    clip: Path, reference: Path, base: torch.Tensor, aligned: torch.Tensor, n_reference: int = 1000
) -> dict[str, float]:
    """FID of base and aligned against real images (CLIP image features) and the relative drift."""
    features = ClipImageFeatures.from_folder(clip)
    real = load_reference(reference, n_reference, base.shape[-1])
    fid = {"base": clip_fid(features, real, base), "aligned": clip_fid(features, real, aligned)}
    return {**fid, "drift": (fid["aligned"] - fid["base"]) / fid["base"]}


def paired_gain(base: np.ndarray, aligned: np.ndarray, prompts: list[str]) -> dict[str, Any]:
    """Mean of base and aligned, and the mean paired gain in base standard deviations with a 95%
    CI over prompts."""
    scale = float(base.std()) or 1.0
    gain = (np.asarray(aligned, dtype=np.float64) - base) / scale
    lo, hi = bootstrap_ci(gain, groups=prompts)
    return {
        "base": float(base.mean()),
        "aligned": float(aligned.mean()),
        "base_std": scale,
        "gain_std": float(gain.mean()),
        "gain_std_ci": [lo, hi],
    }


def before_after_grid(
    base: torch.Tensor, aligned: torch.Tensor, seeds_per_prompt: int, path: Path, n_prompts: int = 8
) -> None:
    """Base row above aligned row: the first seed of the first `n_prompts` prompts."""
    pick = slice(0, n_prompts * seeds_per_prompt, seeds_per_prompt)
    with atomic_path(path) as tmp:
        make_grid(
            to_pil(torch.cat([base[pick], aligned[pick]])), ncols=len(base[pick]), scale=3
        ).save(tmp, format="PNG")
