"""Efficiency of the generator under test: images per second and seconds per image.

Both come from the wall time the runner measured while sampling the suite (`Samples.seconds`,
every prompt set and batch included) and the number of images it made. One timing has no
per-image spread to resample, so the figures carry no CI; compare them only between runs on the
same machine (the report's settings name it).
"""

from __future__ import annotations

from typing import Any

from base_models.errors import ArtalignError
from evaluation.registry import register_metric
from evaluation.stats import Figure


def throughput(n_images: int, seconds: float) -> dict[str, Figure]:
    """{"images_per_s", "s_per_image"} of `n_images` made in `seconds` of wall time."""
    if n_images < 1:
        raise ArtalignError("efficiency needs at least one generated image")
    if not seconds > 0:
        raise ArtalignError(
            f"efficiency needs the generation wall time; got {seconds} s — the samples were not "
            "timed (generate them with `artalign eval run`)"
        )
    return {
        "images_per_s": Figure(n_images / seconds, n_images, None, True),
        "s_per_image": Figure(seconds / n_images, n_images, None, False),
    }


@register_metric("efficiency", aspect="efficiency", higher_is_better=True)
def efficiency(ctx: Any, samples: Any, on: str | None = None) -> dict[str, Figure]:
    """Images per second and seconds per image of the generator over the whole suite."""
    del ctx  # needs no instrument
    if on is not None:
        raise ArtalignError(
            f"efficiency times the whole suite, not prompt set {on!r}; drop `on` from its params"
        )
    return throughput(len(samples), float(samples.seconds))
