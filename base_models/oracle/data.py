"""The oracle's training images: fresh procedural scenes rendered in memory, with cell targets.

Item i is drawn from `numpy.random.default_rng([seed, i])`, as `data make` does, so any item can be
regenerated alone and a run that resumes sees the same images. The oracle's seed stream is its own
(default 1_000_003), so it never trains on the images of a data set made with `data make` defaults.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from base_models.world.attributes import (
    ALL_SHAPES,
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    GRID,
    SIZE_NAMES,
    STYLES,
    SceneSpec,
)
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler

IGNORE = -100  # target of an empty cell's shape/colour/size: ignored by the loss


@dataclass
class OracleData:
    """Images and targets of items [start, start + n) of one stream.

    images (N, S, S, 3) uint8; presence (N, 9) float32; shape, colour, size (N, 9) int64 with
    IGNORE in empty cells; background, style (N,) int64; records: the ground-truth records.
    """

    images: np.ndarray
    presence: np.ndarray
    shape: np.ndarray
    colour: np.ndarray
    size: np.ndarray
    background: np.ndarray
    style: np.ndarray
    records: list[dict]

    def __len__(self) -> int:
        return len(self.images)


def scene_targets(scene: SceneSpec) -> tuple[np.ndarray, ...]:
    """(presence (9,), shape (9,), colour (9,), size (9,), background, style) of one scene."""
    cells = GRID * GRID
    presence = np.zeros(cells, np.float32)
    shape, colour, size = (np.full(cells, IGNORE, np.int64) for _ in range(3))
    for o in scene.objects:
        c = o.row * GRID + o.col
        presence[c] = 1.0
        shape[c] = ALL_SHAPES.index(o.shape)
        colour[c] = COLOUR_NAMES.index(o.colour)
        size[c] = SIZE_NAMES.index(o.size)
    bg = np.int64(BACKGROUND_NAMES.index(scene.background))
    return presence, shape, colour, size, bg, np.int64(STYLES.index(scene.style))


def _render_range(args: tuple[int, int, int, int, float, int]) -> OracleData:
    seed, start, stop, size, unsafe_share, supersample = args
    sampler = SceneSampler(split="all", unsafe_share=unsafe_share, stereotypes=())
    images, targets, records = [], [], []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        scene, jitter = sampler.sample(rng)
        images.append(np.asarray(render_scene(scene, size, jitter, supersample), np.uint8))
        targets.append(scene_targets(scene))
        records.append(scene.to_record())
    cols = list(zip(*targets, strict=True))
    return OracleData(np.stack(images), *(np.stack(c) for c in cols), records=records)


def _concat(parts: list[OracleData]) -> OracleData:
    fields = ("images", "presence", "shape", "colour", "size", "background", "style")
    arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    return OracleData(**arrays, records=[r for p in parts for r in p.records])


def render_items(
    seed: int,
    start: int,
    n: int,
    size: int = 32,
    unsafe_share: float = 0.15,
    supersample: int = 4,
    workers: int = 1,
    desc: str = "render",
) -> OracleData:
    """Render items [start, start + n) of the stream `seed` ("all" split, no stereotypes)."""
    chunk = 500
    jobs = [
        (seed, a, min(a + chunk, start + n), size, unsafe_share, supersample)
        for a in range(start, start + n, chunk)
    ]
    bar = tqdm(total=n, desc=desc, unit="img", mininterval=1.0, leave=False)
    parts = []
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            parts.append(_render_range(job))
            bar.update(job[2] - job[1])
    else:
        # fork: the children only run numpy and PIL; spawn would re-import torch in each one.
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(workers) as pool:
            for part in pool.imap(_render_range, jobs):
                parts.append(part)
                bar.update(len(part))
    bar.close()
    return _concat(parts)
