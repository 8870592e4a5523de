"""Labelled data for the reward benchmarks: prompts that leave attributes open, simulated stores.

- `open_prompts`: prompts naming each object's colour and shape (its position half the time) and,
  optionally, the style; size and background are always left to the image (and, without
  `style_p`, the style), so images of one prompt differ in what the raters' taste weighs
  independently of prompt fidelity.
- `simulated_store`: a fresh label store, batches made as `artalign label batch --procedural
  --mistake-rate` makes them (`labeling_app.batch.make_batch`), judged by `labeling_app.simulate`.
- `add_style_pairs`: a batch of pairs that differ only in style: one scene per (new) prompt,
  rendered twice with the same objects, background and jitter in two different styles.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from base_models.world.attributes import STYLES
from base_models.world.captions import COLOUR_WORDS, SHAPE_WORDS, STYLE_WORDS
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler
from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
from labeling_app.batch_scenes import scene_for_prompt
from labeling_app.simulate import simulate
from labeling_app.store import Store


def open_prompts(
    n: int, seed: int, style_p: float = 0.5, position_p: float = 0.5, max_objects: int = 2
) -> list[str]:
    """`n` distinct prompts such as 'a red circle in the top left and a blue star, striped style'.

    Distinct, so that prompts taken from different parts of the list never share a split.
    """
    rng = np.random.default_rng(seed)
    sampler = SceneSampler(split="train", max_objects=max_objects, unsafe_share=0.0)
    prompts: dict[str, None] = {}
    while len(prompts) < n:
        scene, _ = sampler.sample(rng)
        phrases = []
        for o in scene.objects:
            words = f"{COLOUR_WORDS[o.colour][0]} {SHAPE_WORDS[o.shape][0]}"
            phrase = ("an " if words[0] in "aeiou" else "a ") + words
            if rng.random() < position_p:
                phrase += " in the center" if o.position == "center" else f" in the {o.position}"
            phrases.append(phrase)
        text = phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"
        if rng.random() < style_p:
            text += f", {STYLE_WORDS[scene.style][0]} style"
        prompts[text] = None
    return list(prompts)


@dataclasses.dataclass
class BatchSpec:
    """One batch of a simulated store: its prompts, tasks and how many judgments to write."""

    name: str
    prompts: list[str]
    k: int = 4
    kinds: tuple[str, ...] = ("rank",)
    overlap: int = 1
    n_judgments: int = 0
    seed: int = 0


def simulated_store(
    folder: Path, batches: list[BatchSpec], profile: Any, oracle: Any, mistake_rate: float
) -> tuple[Path, dict[str, Any]]:
    """A fresh store in `folder` with the batches made and judged; returns (db, notes).

    The simulator's metrics (spammer names, the run's ceiling) are written beside the store as
    `labels.db.simulate-<profile>.json` (the last run's; the spammers are the same in all).
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    db = folder / "labels.db"
    notes: dict[str, Any] = {"mistake_rate": mistake_rate, "batches": {}}
    with Store(db, create=True) as store:
        for spec in batches:
            t0 = time.perf_counter()
            plan = BatchPlan(k=spec.k, kinds=spec.kinds, overlap=spec.overlap, seed=spec.seed)
            source = ProceduralSource(size=32, mistake_rate=mistake_rate)
            batch_id = make_batch(store, spec.prompts, source, plan, spec.name)
            t1 = time.perf_counter()
            # the profile's own seed in every batch, so the same accounts are the spammers
            sim = simulate(store, profile, oracle, spec.n_judgments, batch_id=batch_id)
            notes["batches"][spec.name] = {
                "prompts": len(spec.prompts),
                "k": spec.k,
                "kinds": list(spec.kinds),
                "overlap": spec.overlap,
                "judgments": sim["n_written"],
                "tasks_judged": sim["n_tasks_judged"],
                "ceiling_of_run": sim["ceiling"],
                "make_seconds": t1 - t0,
                "simulate_seconds": time.perf_counter() - t1,
            }
            notes["spammers"] = [r["name"] for r in sim["raters"] if r["spammer"]]
    return db, notes


def add_style_pairs(
    db: Path,
    prompts: list[str],
    profile: Any,
    oracle: Any,
    name: str = "style-pairs",
    seed: int = 0,
) -> dict[str, Any]:
    """A batch of pair tasks whose two images differ only in style; judged once each.

    Each prompt gets one scene (`scene_for_prompt`, no mistake) drawn in two styles, cycling
    through the 10 unordered style pairs; the display order is random.
    """
    combos = list(itertools.combinations(STYLES, 2))
    order = random.Random(seed)
    with Store(db) as store:
        with store.bulk():
            batch_id = store.create_batch(name, {"style_pairs": True, "seed": seed})
            for i, text in enumerate(prompts):
                rng = np.random.default_rng([seed, i])
                scene, jitter, _ = scene_for_prompt(text, rng, mistake=False)
                pid = store.add_prompt(text)
                ids = []
                for style in combos[i % len(combos)]:
                    styled = dataclasses.replace(scene, style=style)
                    image = render_scene(styled, 32, jitter)
                    ids.append(
                        store.add_image(
                            pid,
                            image,
                            seed=seed + i,
                            model="procedural",
                            settings={"scene": styled.to_record(), "style_pair": True},
                        )
                    )
                store.add_task(batch_id, "pair", pid, ids if order.random() < 0.5 else ids[::-1])
        sim = simulate(store, profile, oracle, len(prompts), batch_id=batch_id)
    return {
        "prompts": len(prompts),
        "judgments": sim["n_written"],
        "ceiling_of_run": sim["ceiling"],
    }


def image_settings(db: Path) -> dict[str, dict[str, Any]]:
    """Image path (as the loaders record it) -> the settings stored with it (e.g. its mistake)."""
    with Store(db) as store:
        ids = sorted({i for t in store.tasks() for i in t.image_ids})
        return {str(r.path): r.settings for r in store.images(ids).values()}
