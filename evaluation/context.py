"""What a metric is given: the samples under test and the instruments to read them.

`Samples` are the generated images of one model on one suite, in suite order, with each image's
prompt, seed and suite item (category, required attributes, ...). `EvalContext` holds the
instruments, loaded lazily on first use so that a suite pays only for what its metrics read: the
attribute oracle, the CLIP model, a reward function, a simulated-rater profile, the reference
image set and the feature cache. `other` is model B's samples of the same suite (win-rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.oracle import AttributeOracle
from base_models.raters import load_profile
from evaluation.registry import REWARDS, get_extractor


@dataclass
class Samples:
    """One model's images of a suite: (N, 3, H, W) floats in [0, 1], in suite order."""

    images: torch.Tensor
    prompts: list[str]
    seeds: list[int]
    items: list[dict[str, Any]]  # the suite item of each image: category, required, ...
    model: str = ""
    seconds: float = 0.0  # wall time the generator took to make them

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.prompts) == len(self.seeds) == len(self.items) == n):
            raise ArtalignError(
                f"samples disagree in length: {n} images, {len(self.prompts)} prompts, "
                f"{len(self.seeds)} seeds, {len(self.items)} items"
            )

    def __len__(self) -> int:
        return len(self.images)

    def set_mask(self, on: str | None, metric: str) -> list[bool]:
        """Which images belong to prompt set `on` (all when None); an error names an empty set."""
        if on is None:
            return [True] * len(self)
        mask = [item.get("set") == on for item in self.items]
        if not any(mask):
            sets = sorted({str(item.get("set")) for item in self.items})
            raise ArtalignError(
                f"metric {metric!r}: no items of prompt set {on!r} (the suite's images come from "
                f"{', '.join(sets) or 'no set'}); add {on!r} under prompt_sets or pass on: SET"
            )
        return mask

    def of_set(self, on: str | None, metric: str) -> Samples:
        """The samples of prompt set `on` (all of them when None), as `set_mask` picks them."""
        return self if on is None else self.select(self.set_mask(on, metric))

    def select(self, mask: list[bool]) -> Samples:
        """The samples where `mask` is true (e.g. one category of a suite)."""
        idx = [i for i, keep in enumerate(mask) if keep]
        return Samples(
            self.images[idx],
            [self.prompts[i] for i in idx],
            [self.seeds[i] for i in idx],
            [self.items[i] for i in idx],
            self.model,
            self.seconds,
        )


def _need(value: Any, what: str, flag: str) -> Any:
    if value is None:
        raise ArtalignError(f"this suite needs {what}; pass {flag}")
    return value


@dataclass
class EvalContext:
    """Instruments and settings shared by every metric of one evaluation run."""

    oracle_path: str | Path | None = None
    clip_path: str | Path | None = None
    reward_path: str | Path | None = None
    reward_loader: str = "reward_model"
    rater_profile_path: str | Path | None = None
    reference_path: str | Path | None = None  # an imagefolder of real images (FID, bias)
    cache_dir: str | Path | None = None  # feature cache (keyed by content hash)
    extractor: str = "clip"
    device: str = "cpu"
    seed: int = 0
    n_boot: int = 1000
    other: Samples | None = None  # model B's samples, for win-rates
    settings: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def oracle(self) -> Any:
        path = _need(self.oracle_path, "the attribute oracle", "--oracle DIR")
        return AttributeOracle.load(path, device=self.device)

    @cached_property
    def clip(self) -> Any:
        """(model, preprocess, tokenizer) of the CLIP folder, as base_models.clip.load_clip."""
        # lazy: open_clip
        from base_models.clip.model_io import load_clip

        path = _need(self.clip_path, "a CLIP model", "--clip DIR")
        return load_clip(str(path))

    @cached_property
    def reward_fn(self) -> Any:
        path = _need(self.reward_path, "a reward model", "--reward DIR")
        return REWARDS.build(self.reward_loader, path=path, device=self.device)

    @cached_property
    def rater_profile(self) -> Any:
        path = _need(self.rater_profile_path, "a simulated-rater profile", "--rater PROFILE.yaml")
        return load_profile(path)

    def features(self, name: str | None = None, **params: Any) -> Any:
        """The feature extractor `name` (default: the context's), built once per name."""
        key = name or self.extractor
        cache = self.__dict__.setdefault("_extractors", {})
        if key not in cache:
            cache[key] = get_extractor(key)(self, **params)
        return cache[key]
