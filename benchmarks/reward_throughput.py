"""Scoring throughput (issue 5, part c): a trained reward model against the bare CLIP encoder.

    python benchmarks/reward_throughput.py --model runs/bench/reward/b/model --clip runs/demo/clip

Both score the same PIL images with the same batch size, preprocessing included: the reward
model through `RewardModel.score(images, prompts)` (image tower, text tower once per distinct
prompt, head), the baseline through `base_models.clip.model_io.embed_images` (image tower only).
Each is timed `repeats` times after one warm-up pass; the median counts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_utils import median_seconds  # noqa: E402

from base_models.clip.model_io import embed_images, load_clip  # noqa: E402
from rlhf.reward.loaders import load_from_store  # noqa: E402
from rlhf.reward.model import load_reward_model  # noqa: E402


def throughput(
    model_dir: Path,
    clip: Path,
    images: list,
    prompts: list[str],
    batch_size: int = 256,
    repeats: int = 3,
) -> dict[str, Any]:
    """images/s of the reward model and of the bare CLIP image encoder on the same images."""
    model = load_reward_model(model_dir)
    net, preprocess, _ = load_clip(clip)
    with torch.inference_mode():
        t_reward = median_seconds(lambda: model.score(images, prompts, batch_size), repeats)
        t_clip = median_seconds(lambda: embed_images(net, images, preprocess, batch_size), repeats)
    n = len(images)
    return {
        "n_images": n,
        "batch_size": batch_size,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "reward_images_per_s": n / t_reward,
        "clip_images_per_s": n / t_clip,
        "ratio": t_clip / t_reward,
    }


def sample_images(db: Path, batch: str | None, n: int = 2048) -> tuple[list, list[str]]:
    """Up to `n` images of a label store (seeded choice) with the prompt each was made for."""
    data = load_from_store(db, batch=batch, exclude_raters=None)
    prompt_of = {}
    for p in data.all_pairs():
        prompt_of.setdefault(p.image_a, p.prompt)
        prompt_of.setdefault(p.image_b, p.prompt)
    used = sorted(prompt_of)
    picks = sorted(
        np.random.default_rng(0).choice(len(used), size=min(n, len(used)), replace=False)
    )
    return [data.load_image(used[i]) for i in picks], [prompt_of[used[i]] for i in picks]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("runs/bench/reward/b/model"))
    p.add_argument("--clip", type=Path, default=Path("runs/demo/clip"))
    p.add_argument("--data", type=Path, default=Path("runs/bench/reward/b/labels.db"))
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    images, prompts = sample_images(args.data, None, args.n)
    r = throughput(args.model, args.clip, images, prompts, args.batch_size)
    print(
        f"reward model {r['reward_images_per_s']:.0f} images/s, bare CLIP image encoder "
        f"{r['clip_images_per_s']:.0f} images/s (ratio {r['ratio']:.3f}, {r['n_images']} images)"
    )


if __name__ == "__main__":
    main()
