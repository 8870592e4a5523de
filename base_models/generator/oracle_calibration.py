"""`artalign oracle calibrate`: the oracle's calibration on a generator's images, and its fix.

Draws one image per world scene (half one-object, half two-object scenes, captions without
positions, as the generator evaluation does), reads each with the oracle at temperature 1, and
finds its truth by analysis by synthesis (`base_models.oracle.calibration`). The images are split
in two by index parity: temperatures are fitted per head on the even half and the ECE is reported
on the odd half, before and after; the renders of the same scenes give the reference ECE. With
`write`, the temperatures go into the oracle's config.json, and every later reading (raters,
metrics, guard) uses them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from base_models.errors import ArtalignError
from base_models.generator.evaluate import prompt_scenes, sample_seeds
from base_models.generator.generator import Generator
from base_models.io_utils import write_json
from base_models.oracle.calibration import (
    calibration_table,
    fit_temperature,
    head_samples,
    pool,
    synthesis_truth,
)
from base_models.oracle.model import AttributeOracle
from base_models.oracle.reading import read_images
from base_models.world.captions import canonical_caption


def _summary(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    keep = ("ece", "mce", "accuracy", "confidence", "n")
    return {head: {k: row[k] for k in keep} for head, row in table.items()}


def calibrate_oracle(
    oracle_dir: str | Path,
    generator_dir: str | Path,
    out: str | Path,
    n: int = 200,
    steps: int = 20,
    guidance: float = 3.0,
    write: bool = False,
) -> dict[str, Any]:
    """Measure (and with `write`, fix) the oracle's calibration; write `out/metrics.json`."""
    if n < 4:
        raise ArtalignError(f"--n is {n}; calibration needs at least 4 images (use 200 or more)")
    start = time.perf_counter()
    oracle = AttributeOracle.load(oracle_dir)
    stored = dict(oracle.temperatures)
    oracle.temperatures = {}  # fit and report from the raw heads
    generator = Generator.from_folder(generator_dir)
    pairs = prompt_scenes("single", n - n // 2) + prompt_scenes("two", n // 2)
    scenes = [s for s, _ in pairs]
    prompts = [canonical_caption(s, with_position=False) for s in scenes]
    pixels = sample_seeds(generator, prompts, 1, steps, guidance, desc="calibration images")
    readings = read_images(oracle, pixels)
    images = [(p.permute(1, 2, 0).numpy() * 255.0) for p in pixels]
    samples = []
    for image, reading in tqdm(list(zip(images, readings, strict=True)), desc="synthesis"):
        samples.append(head_samples(reading, synthesis_truth(image, reading)))
    fit, held = pool(samples[0::2]), pool(samples[1::2])
    temperatures = {head: fit_temperature(v) for head, v in fit.items() if v}
    render_readings = read_images(oracle, [im for _, im in pairs])
    renders = pool(
        head_samples(r, s.to_record()) for r, s in zip(render_readings, scenes, strict=True)
    )
    metrics: dict[str, Any] = {
        "n_images": len(scenes),
        "temperatures": temperatures,
        "generated_before": _summary(calibration_table(held)),
        "generated_after": _summary(calibration_table(held, temperatures)),
        "renders_before": _summary(calibration_table(renders)),
        "renders_after": _summary(calibration_table(renders, temperatures)),
        "previous_temperatures": stored,
        "written": write,
        "settings": {"steps": steps, "guidance": guidance, "split": "fit even, report odd"},
        "oracle": str(Path(oracle_dir).resolve()),
        "generator": str(Path(generator_dir).resolve()),
    }
    if write:
        oracle.temperatures = temperatures
        oracle.save(oracle_dir)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    write_json(Path(out) / "metrics.json", metrics)
    return metrics
