"""How well the base generator draws what it is asked: the oracle reads generated images.

Three prompt sets, each drawn from the procedural world with its own seed (so none is a training
caption) and written in the canonical wording:
- single:   single-object prompts of the train split: colour, shape, both, and every attribute;
- heldout:  single objects whose colour-shape pair never appears in training (generalisation);
- two:      two-object prompts: both objects right (colour and shape of each), count, everything.
Each prompt is drawn with `seeds` seeds. FID compares the generations of the single set with as
many real images of the same prompts' scenes, in the CLIP image tower's feature space
(torchmetrics' FrechetInceptionDistance with a custom extractor, float64 statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from base_models.errors import ArtalignError
from base_models.generator.generator import Generator
from base_models.oracle import AttributeOracle, images_to_tensor, read_images
from base_models.oracle.fidelity import fidelity
from base_models.world.attributes import SceneSpec
from base_models.world.captions import canonical_caption
from base_models.world.dataset import DataConfig, generate_item

IMAGE_SIZE = 32  # side of the real images the prompt sets render
PROMPT_SEEDS = {"single": 7001, "heldout": 7002, "two": 7003}


def prompt_scenes(
    kind: str, n: int, size: int = IMAGE_SIZE, seed: int | None = None
) -> list[tuple[SceneSpec, Any]]:
    """`n` (scene, real image) pairs of prompt set `kind` (single | heldout | two)."""
    objects = 2 if kind == "two" else 1
    cfg = DataConfig(
        n=n,
        seed=PROMPT_SEEDS[kind] if seed is None else seed,
        size=size,
        split="heldout" if kind == "heldout" else "train",
        min_objects=objects,
        max_objects=objects,
        unsafe_share=0.0,
        stereotypes=[],
    )
    sampler = cfg.sampler()
    out = []
    for i in range(n):
        image, record = generate_item(cfg, sampler, i)
        out.append((SceneSpec.from_record(record), image))
    return out


def _object_scores(reading: Any, obj: dict[str, Any]) -> tuple[bool, bool]:
    """(some read object has obj's colour, some read object has obj's shape)."""
    return (
        any(o["colour"] == obj["colour"] for o in reading.objects),
        any(o["shape"] == obj["shape"] for o in reading.objects),
    )


def score_prompt_set(readings: list[Any], scenes: list[SceneSpec]) -> dict[str, float]:
    """Accuracies of oracle readings against the scenes their prompts describe.

    colour / shape: every asked-for colour (shape) is drawn; both: the asked-for objects are
    drawn with colour and shape bound right (one read object per asked-for object); all
    attributes: that plus size, count, background and style. style / background: the image's
    style (background colour) is the asked-for one, whatever its objects.
    """
    colour, shape, both, allattr, count, style, background = [], [], [], [], [], [], []
    for reading, scene in zip(readings, scenes, strict=True):
        record = scene.to_record()
        per_obj = [_object_scores(reading, o) for o in record["objects"]]
        colour.append(all(p[0] for p in per_obj))
        shape.append(all(p[1] for p in per_obj))
        required = {
            "objects": [{"colour": o["colour"], "shape": o["shape"]} for o in record["objects"]]
        }
        both.append(fidelity(reading, required)[1])  # one-to-one assignment of objects
        required.update(count=scene.count, background=scene.background, style=scene.style)
        for req, o in zip(required["objects"], record["objects"], strict=True):
            req["size"] = o["size"]
        allattr.append(fidelity(reading, required)[1])
        count.append(reading.count == scene.count)
        style.append(reading.style == scene.style)
        background.append(reading.background == scene.background)
    return {
        "colour_acc": float(np.mean(colour)),
        "shape_acc": float(np.mean(shape)),
        "both_acc": float(np.mean(both)),
        "all_attributes_acc": float(np.mean(allattr)),
        "count_acc": float(np.mean(count)),
        "style_acc": float(np.mean(style)),
        "background_acc": float(np.mean(background)),
        "n_images": len(readings),
    }


def clip_fid(features: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two image sets (floats in [0, 1]) in the feature space of `features`."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if min(len(real), len(fake)) < 2:
        raise ArtalignError("FID needs at least 2 real and 2 generated images")
    fid = FrechetInceptionDistance(feature=features, normalize=True)
    for chunk in real.split(256):
        fid.update(chunk, real=True)
    for chunk in fake.split(256):
        fid.update(chunk, real=False)
    return float(fid.compute())


def sample_seeds(
    generator: Generator,
    prompts: list[str],
    seeds: int,
    steps: int,
    guidance: float,
    batch_size: int = 64,
    desc: str = "sample",
) -> torch.Tensor:
    """Each prompt drawn with `seeds` seeds (seed 1000·k + j for draw j of prompt k), in order:
    (len(prompts) * seeds, 3, H, W) pixels in [0, 1]."""
    flat = [p for p in prompts for _ in range(seeds)]
    seed_list = [1000 * k + j for k in range(len(prompts)) for j in range(seeds)]
    pixels = []
    for start in tqdm(range(0, len(flat), batch_size), desc=desc, unit="batch"):
        out = generator.sample(
            flat[start : start + batch_size],
            seed_list[start : start + batch_size],
            steps=steps,
            guidance=guidance,
            batch_size=batch_size,
        )
        pixels.append(out.pixels)
    return torch.cat(pixels)


def evaluate_generator(
    generator: Generator,
    oracle: AttributeOracle,
    features: torch.nn.Module | None,
    n_prompts: int = 200,
    seeds: int = 4,
    n_two: int = 100,
    n_heldout: int = 100,
    steps: int = 20,
    guidance: float = 3.0,
    batch_size: int = 64,
    keep: Callable[[str, torch.Tensor, list[str]], None] | None = None,
) -> dict[str, Any]:
    """Sample every prompt set, read the images with the oracle, compute FID; return metrics.

    `keep(kind, pixels, prompts)` is called with each set's images (e.g. to save a grid).
    """
    if n_prompts < 1 or seeds < 1:
        raise ArtalignError("n_prompts and seeds must be >= 1")
    sets = {"single": n_prompts, "heldout": n_heldout, "two": n_two}
    metrics: dict[str, Any] = {
        "settings": {"steps": steps, "guidance": guidance, "eta": 0.0, "seeds_per_prompt": seeds}
    }
    for kind, n in sets.items():
        if n < 1:
            continue
        # the single set draws n * seeds scenes: its first n are the prompts, all are FID's reals
        pairs = prompt_scenes(kind, n * seeds if kind == "single" else n)
        reals = images_to_tensor([im for _, im in pairs], IMAGE_SIZE) if kind == "single" else None
        pairs = pairs[:n]
        scenes = [s for s, _ in pairs for _ in range(seeds)]
        prompts = [canonical_caption(s, with_position=False) for s, _ in pairs]
        fake = sample_seeds(generator, prompts, seeds, steps, guidance, batch_size, kind)
        prompts = [p for p in prompts for _ in range(seeds)]
        readings = read_images(oracle, fake)
        metrics[kind] = score_prompt_set(readings, scenes)
        metrics[kind]["n_prompts"] = n
        if keep is not None:
            keep(kind, fake, prompts)
        if reals is not None and features is not None:
            # the floor: FID between these reals and as many other real images of the world
            other = prompt_scenes("single", len(reals), seed=PROMPT_SEEDS["single"] + 100)
            floor = clip_fid(features, reals, images_to_tensor([im for _, im in other], IMAGE_SIZE))
            metrics["fid_clip"] = {
                "value": clip_fid(features, reals, fake),
                "real_vs_real": floor,
                "n_real": len(reals),
                "n_generated": len(fake),
            }
    return metrics


def load_instruments(oracle: str | Path, clip: str | Path | None) -> tuple[Any, Any]:
    """(oracle, CLIP feature extractor or None) from their folders."""
    # lazy: open_clip
    from base_models.clip.features import ClipImageFeatures

    return AttributeOracle.load(oracle), (ClipImageFeatures.from_folder(clip) if clip else None)
