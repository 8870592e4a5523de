"""Simulated raters at work: judgments written through the same Store API the app uses.

`simulate` makes (or reuses) the profile's rater accounts `sim-<profile>-<i>`, then serves them
tasks in turn exactly as the app does (`store.next_task` -> answer -> `store.submit` with a
fresh client token), until n judgments are written or no rater has work left. Each image is read
once by the oracle, with its doubt (per-attribute probabilities); the hidden expected utility,
the legibility and the answer come from `base_models.raters` and `base_models.oracle.expected`.
Which accounts are spammers is the simulator's secret: it goes to the metrics JSON, never to the
store.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from base_models.oracle.expected import legibility
from base_models.oracle.fidelity import parse_prompt
from base_models.oracle.model import AttributeOracle
from base_models.oracle.reading import read_images
from base_models.rater_ceiling import agreement_ceiling
from base_models.raters import (
    RaterProfile,
    both_illegible,
    sample_pair,
    sample_ranking,
    utility,
)
from labeling_app.store import Store, Task


def rater_names(profile: RaterProfile) -> list[str]:
    """The account names of the profile's raters: sim-<name>-<i>."""
    return [f"sim-{profile.name}-{i}" for i in range(profile.n_raters)]


def spammer_indices(profile: RaterProfile, seed: int) -> list[int]:
    """Which of the profile's raters are spammers: round(spammer_share * n_raters) of them.

    Drawn from the seed alone, so a rerun with the same seed keeps the same spammers.
    """
    n_spam = round(profile.spammer_share * profile.n_raters)
    rng = np.random.default_rng([seed, 0])
    return sorted(int(i) for i in rng.choice(profile.n_raters, size=n_spam, replace=False))


def default_metrics_path(store: Store, profile: RaterProfile) -> Path:
    """Where `simulate` writes its metrics without `out`: beside the database."""
    db = Path(store.db_path)
    return db.with_name(f"{db.name}.simulate-{profile.name}.json")


class _Utilities:
    """Oracle readings (with probabilities) per image id and parsed prompts, each made once."""

    def __init__(self, oracle: AttributeOracle, profile: RaterProfile) -> None:
        self.oracle, self.profile = oracle, profile
        self.readings: dict[int, dict[str, Any]] = {}
        self.prompts: dict[str, dict[str, Any]] = {}

    def of(self, task: Task) -> list[float]:
        missing = [
            (i, p)
            for i, p in zip(task.image_ids, task.image_paths, strict=True)
            if i not in self.readings
        ]
        if missing:
            images = []
            for image_id, path in missing:
                try:
                    with Image.open(path) as im:
                        images.append(im.convert("RGB"))
                except OSError as e:
                    raise ArtalignError(f"image {image_id} ({path}) cannot be read: {e}") from e
            for (image_id, _), reading in zip(
                missing, read_images(self.oracle, images), strict=True
            ):
                self.readings[image_id] = reading.to_record(probabilities=True)
        if task.prompt not in self.prompts:
            self.prompts[task.prompt] = parse_prompt(task.prompt)
        required = self.prompts[task.prompt]
        return [utility(self.readings[i], required, self.profile) for i in task.image_ids]

    def illegible(self, task: Task) -> bool:
        """Whether all of the task's images (read by `of`) fall below the legibility bar."""
        legible = [legibility(self.readings[i]) for i in task.image_ids]
        return both_illegible(legible, self.profile)


def _answer(
    task: Task,
    u: list[float],
    profile: RaterProfile,
    rng: np.random.Generator,
    spammer: bool,
    illegible: bool,
) -> dict[str, Any]:
    if task.kind == "pair":
        return {"choice": sample_pair(u[0], u[1], profile, rng, spammer, illegible)}
    if task.kind == "rank":
        return {"ranks": sample_ranking(u, profile, rng, spammer)}
    raise ArtalignError(f"task {task.task_id} has kind {task.kind!r}; simulate knows pair, rank")


def _think_time(task: Task, rng: np.random.Generator, spammer: bool) -> float:
    """Seconds the simulated rater 'took': log-normal, longer for rankings, short for spammers."""
    typical = 1.0 if spammer else 2.0 + 1.0 * len(task.image_ids)
    return round(float(typical * rng.lognormal(0.0, 0.35)), 3)


def simulate(
    store: Store,
    profile: RaterProfile,
    oracle: AttributeOracle,
    n: int,
    batch_id: int | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    gold_rate: float = 0.0,
) -> dict[str, Any]:
    """Write up to `n` judgments by the profile's simulated raters; return and save metrics.

    Raters take turns (one task each per round) so the work spreads evenly; a rater with no task
    left drops out. `seed` (default: the profile's) fixes spammers and answers. Metrics: counts
    per rater, spammer ids, and the analytic agreement ceiling on the tasks judged in this run;
    written to `out` (a .json file, or a folder for metrics.json), else beside the database.
    """
    if n < 0:
        raise ArtalignError(f"--n must be 0 or more, got {n}")
    seed = profile.seed if seed is None else int(seed)
    # one transaction: a run killed midway leaves no judgments, so a rerun starts from the same
    # store and writes the same answers (`artalign loop` reruns an interrupted label_sim)
    with store.bulk():
        return _simulate(store, profile, oracle, n, batch_id, seed, out, gold_rate)


def _simulate(
    store: Store,
    profile: RaterProfile,
    oracle: AttributeOracle,
    n: int,
    batch_id: int | None,
    seed: int,
    out: str | Path | None,
    gold_rate: float,
) -> dict[str, Any]:
    existing = {r.name: r for r in store.raters()}
    spam_idx = set(spammer_indices(profile, seed))
    raters: list[dict[str, Any]] = []
    for i, name in enumerate(rater_names(profile)):
        rater_id = existing[name].id if name in existing else store.add_rater(name, role="rater")
        raters.append({"id": rater_id, "name": name, "spammer": i in spam_idx, "judgments": 0})
    rng = np.random.default_rng([seed, 1])
    cache = _Utilities(oracle, profile)
    judged: dict[int, tuple[str, list[float], bool]] = {}
    active = list(range(len(raters)))
    written = 0
    while written < n and active:
        for idx in list(active):
            if written >= n:
                break
            rater = raters[idx]
            task = store.next_task(rater["id"], batch_id=batch_id, gold_rate=gold_rate)
            if task is None:
                active.remove(idx)
                continue
            u = cache.of(task)
            illegible = cache.illegible(task)
            answer = _answer(task, u, profile, rng, rater["spammer"], illegible)
            store.submit(
                task.assignment_id,
                rater["id"],
                answer,
                client_token=f"sim-{uuid.uuid4().hex}",
                seconds=_think_time(task, rng, rater["spammer"]),
            )
            judged[task.task_id] = (task.kind, u, illegible)
            rater["judgments"] += 1
            written += 1
    metrics = {
        "profile": profile.to_dict(),
        "db": str(store.db_path),
        "batch_id": batch_id,
        "seed": seed,
        "n_requested": n,
        "n_written": written,
        "no_work_left": written < n,
        "n_tasks_judged": len(judged),
        "n_images_read": len(cache.readings),
        "raters": raters,
        "spammer_ids": [r["id"] for r in raters if r["spammer"]],
        "ceiling": agreement_ceiling(profile, judged.values()),
    }
    path = Path(out) if out is not None else default_metrics_path(store, profile)
    if path.suffix != ".json":
        path = path / "metrics.json"
    write_json(path, metrics)
    metrics["metrics_path"] = str(path)
    return metrics
