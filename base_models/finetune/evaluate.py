"""Does a fine-tuned style show up, and only when asked? The oracle reads the generations.

Prompts are the generator evaluation's held-out single-object prompts (generator.evaluate) with
their style phrase removed and the trigger phrase in front (`trigger_caption`). Reported:
- style_share: share of images the oracle reads in the target style;
- colour_acc / shape_acc: the asked-for colour / shape is drawn (as in generator.evaluate).
Run once for the fine-tuned generator and once for the base one: the base model's style_share
with the same trigger prompts is the baseline the fine-tune has to beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from base_models.finetune.data import strip_style, trigger_caption
from base_models.generator.evaluate import prompt_scenes, sample_seeds, score_prompt_set
from base_models.oracle import read_images
from base_models.world.captions import canonical_caption


def style_prompts(token: str | None, n_prompts: int) -> tuple[list[str], list[Any]]:
    """(prompts, scenes): trigger prompts, or with token None the same prompts without style."""
    scenes = [s for s, _ in prompt_scenes("single", n_prompts)]
    captions = [canonical_caption(s, with_position=False) for s in scenes]
    if token is None:
        return [strip_style(c) for c in captions], scenes
    return [trigger_caption(c, token) for c in captions], scenes


@torch.no_grad()
def evaluate_style(
    generator: Any,
    oracle: Any,
    style: str,
    prompts: list[str],
    scenes: list[Any],
    seeds: int = 4,
    steps: int = 20,
    guidance: float = 3.0,
    batch_size: int = 64,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Metrics of the images `generator` draws for `prompts` (each with `seeds` seeds)."""
    all_scenes = [s for s in scenes for _ in range(seeds)]
    fake = sample_seeds(generator, prompts, seeds, steps, guidance, batch_size, "style")
    readings = read_images(oracle, fake)
    metrics = score_prompt_set(readings, all_scenes)
    metrics["style_share"] = float(np.mean([r.style == style for r in readings]))
    metrics["style_read"] = {
        s: float(np.mean([r.style == s for r in readings]))
        for s in sorted({r.style for r in readings})
    }
    metrics["example_prompt"] = prompts[0]
    return metrics, fake
