"""The checks every online trainer's config (DDPO, DRaFT) shares, with the same messages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from base_models.errors import ArtalignError
from base_models.train_utils import MIXED_PRECISION


def bad(key: str, why: str) -> ArtalignError:
    return ArtalignError(f"config key '{key}' {why}")


def check_trainer(cfg: Any, at_least_one: Iterable[str], positive: Iterable[str]) -> None:
    """model and prompts set, counts >= 1, step sizes > 0, kl_coef >= 0, a known precision."""
    if not cfg.model:
        raise bad("model", "is empty; pass --model DIR (a Stable Diffusion folder)")
    if not cfg.prompts:
        raise bad("prompts", "is empty; pass --prompts FILE (one prompt a line)")
    for key in at_least_one:
        if getattr(cfg, key) < 1:
            raise bad(key, f"must be >= 1, got {getattr(cfg, key)}")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise bad(key, f"must be > 0, got {getattr(cfg, key)}")
    if cfg.kl_coef < 0:
        raise bad("kl_coef", f"must be >= 0, got {cfg.kl_coef}")
    if cfg.mixed_precision not in MIXED_PRECISION:
        raise bad("mixed_precision", f"must be one of {MIXED_PRECISION}")
