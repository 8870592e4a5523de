"""Scoring with a trained reward model: the trainers' reward function and folder scoring.

`make_reward_fn(dir)` returns `reward_fn(images, prompts, metadata) -> (rewards, info)`, the
signature of ddpo-pytorch's reward functions: images are a float tensor (N, 3, H, W) in [0, 1]
(uint8 tensors, NHWC uint8 numpy arrays and PIL images work too), rewards a float32 CPU tensor
(N,). `score_folder` scores a folder of images (or a manifest) against their prompts and writes
one JSON line (or CSV row) per image, atomically.

Where prompts come from, in order: the `prompts` file given; the folder's `manifest.jsonl`
(`artalign generate`: file, prompt) or `metadata.jsonl` (imagefolder: file_name, text); the
"prompt" text chunk that `artalign generate` and `label batch` write into each PNG.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, read_jsonl
from rlhf.reward.model import load_reward_model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
RewardFn = Callable[..., tuple[torch.Tensor, dict[str, Any]]]


def _as_images(images: Any) -> torch.Tensor | list[Image.Image]:
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ArtalignError(f"numpy images must be (N, H, W, 3), got {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if isinstance(images, torch.Tensor):
        return images.detach()
    return list(images)


def make_reward_fn(
    model_dir: str | Path,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    differentiable: bool = False,
) -> RewardFn:
    """Load the reward model once; return `reward_fn(images, prompts, metadata=None)`.

    info holds the model folder, the batch's mean reward and the seconds scoring took. The
    loaded model is available as `reward_fn.model`. differentiable: the rewards keep their
    autograd graph back to float image tensors (on the model's device) for reward
    backpropagation; the reward model's own weights are frozen.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_reward_model(model_dir, device=device)
    if differentiable:
        model.requires_grad_(False)
        model.eval()

        def grad_fn(images: torch.Tensor, prompts: Sequence[str], metadata: Any = None):
            rewards = model.score_with_grad(images, list(prompts))
            return rewards, {"reward_model": str(model_dir), "mean": float(rewards.detach().mean())}

        grad_fn.model = model  # type: ignore[attr-defined]
        return grad_fn

    def reward_fn(
        images: Any, prompts: str | Sequence[str], metadata: Any = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        t0 = time.perf_counter()
        rewards = model.score(_as_images(images), prompts, batch_size=batch_size)
        info = {
            "reward_model": str(model_dir),
            "mean": float(rewards.mean()) if len(rewards) else None,
            "seconds": time.perf_counter() - t0,
        }
        return rewards, info

    reward_fn.model = model  # type: ignore[attr-defined]
    return reward_fn


# ----------------------------------------------------------------------------- folders
def _manifest_items(path: Path) -> list[tuple[Path, str | None]]:
    """(image path, prompt) from a manifest: JSON list or JSONL of {file|file_name, prompt|text}."""
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ArtalignError(f"manifest {path} is not JSON ({e})") from None
        rows = rows.get("images", rows) if isinstance(rows, dict) else rows
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ArtalignError(f"manifest {path} must be a list of {{file, prompt}} objects")
    else:
        rows = [row for _, row in read_jsonl(path)]
    items = []
    for n, row in enumerate(rows):
        name = row.get("file") or row.get("file_name") or row.get("image")
        if not isinstance(name, str):
            raise ArtalignError(f"manifest {path}: entry {n} has no 'file'")
        prompt = row.get("prompt", row.get("text"))
        items.append((path.parent / name, prompt if isinstance(prompt, str) else None))
    return items


def _png_prompt(path: Path) -> str | None:
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}) or {}
            return text.get("prompt") or None
    except Exception:  # unreadable images are reported when they are scored
        return None


def collect_images(images: str | Path, prompts: str | Path | None = None) -> list[tuple[Path, str]]:
    """The (image, prompt) list to score; ArtalignError when an image has no prompt."""
    images = Path(images)
    if images.is_dir():
        if (images / "manifest.jsonl").is_file():
            items = _manifest_items(images / "manifest.jsonl")
        elif (images / "metadata.jsonl").is_file():
            items = _manifest_items(images / "metadata.jsonl")
        else:
            files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            items = [(p, None) for p in files if p.name != "grid.png"]
    elif images.is_file() and images.suffix in (".json", ".jsonl"):
        items = _manifest_items(images)
    else:
        raise ArtalignError(f"--images {images} is neither a folder nor a .json/.jsonl manifest")
    if not items:
        raise ArtalignError(f"no images found in {images}")
    if prompts is not None:
        items = _apply_prompts(items, Path(prompts))
    out = []
    for path, prompt in items:
        prompt = prompt or _png_prompt(path)
        if not prompt:
            raise ArtalignError(
                f"image {path} has no prompt (no manifest entry or PNG 'prompt' "
                "chunk); pass --prompts FILE"
            )
        out.append((path, prompt))
    return out


def _apply_prompts(items: list[tuple[Path, str | None]], path: Path) -> list[tuple[Path, str]]:
    """A .jsonl of {file, prompt} by file name, or a text file: one line for all, or one each."""
    if not path.is_file():
        raise ArtalignError(f"prompt file {path} does not exist")
    if path.suffix == ".jsonl":
        by_name = {p.name: t for p, t in _manifest_items(path)}
        missing = [p for p, _ in items if p.name not in by_name]
        if missing:
            raise ArtalignError(f"{path} gives no prompt for {missing[0].name}")
        return [(p, by_name[p.name]) for p, _ in items]
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) == 1:
        return [(p, lines[0]) for p, _ in items]
    if len(lines) != len(items):
        raise ArtalignError(
            f"{path} has {len(lines)} prompts for {len(items)} images; give one line for all "
            "images or one per image (in file-name order)"
        )
    return [(p, t) for (p, _), t in zip(items, lines, strict=True)]


def _load(path: Path) -> Image.Image:
    try:
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            return im.convert("RGB")
    except Exception as e:  # missing file, truncated or not an image
        raise ArtalignError(f"image {path} cannot be loaded ({type(e).__name__}: {e})") from None


def score_folder(
    model_dir: str | Path,
    images: str | Path,
    out: str | Path,
    prompts: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> dict[str, Any]:
    """Score every image against its prompt; write `out` (.jsonl, or .csv) atomically.

    Each row: file, prompt, reward. Returns a summary with images/s (model time only).
    """
    items = collect_images(images, prompts)
    reward_fn = make_reward_fn(model_dir, device=device, batch_size=batch_size)
    rewards: list[float] = []
    seconds = 0.0
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        pil = [_load(p) for p, _ in chunk]
        r, info = reward_fn(pil, [t for _, t in chunk], None)
        seconds += info["seconds"]
        rewards += r.tolist()
    rows = [
        {"file": str(p), "prompt": t, "reward": r} for (p, t), r in zip(items, rewards, strict=True)
    ]
    out = Path(out)
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        if out.suffix == ".csv":
            writer = csv.DictWriter(f, fieldnames=["file", "prompt", "reward"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return {
        "n": len(rows),
        "out": str(out),
        "mean": float(np.mean(rewards)),
        "seconds": seconds,
        "images_per_second": len(rows) / seconds if seconds else None,
    }
