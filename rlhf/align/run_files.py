"""Files of an alignment run: the log, the adapters and the base-vs-aligned sample grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from base_models.imaging import make_grid
from base_models.io_utils import atomic_path


def append_log(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line (a crash loses at most the line being written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def save_adapters(generator: Any, out: Path, accelerator: Any | None = None) -> None:
    """Every process reaches this; only the main one writes (no hang when saving)."""
    if accelerator is not None:
        accelerator.wait_for_everyone()
    if accelerator is None or accelerator.is_main_process:
        generator.save_lora(out)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def save_samples_grid(
    generator: Any, prompts: list[str], out: Path, steps: int, guidance: float
) -> None:
    """Two rows per prompt block: the base model (adapters off) above the aligned model, same
    seeds, so the grid shows what alignment changed."""
    seeds = list(range(len(prompts)))
    with generator.lora_disabled():
        base = generator.sample(prompts, seeds, steps=steps, guidance=guidance).images
    aligned = generator.sample(prompts, seeds, steps=steps, guidance=guidance).images
    grid = make_grid(base + aligned, ncols=len(prompts), scale=3)
    with atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")
