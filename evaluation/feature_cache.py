"""Features of an image set computed once, keyed by what they depend on: weights and pixels.

Embedding a reference set (thousands of real images) costs far more than any metric computed
from its features, and every evaluation of every model compares against the same set. So the
features are stored under `sha256(extractor fingerprint + the images' content)`: a new model,
another run or another metric of the same run reads them back; a changed image, other weights
or another preprocessing make a new key, so stale features are never reused.

On disk a cache entry is `DIR/<key>.safetensors` (one tensor, "features", (N, D)), written
atomically; entries are also kept in memory for the rest of the process. Without a folder the
cache is memory-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from base_models.errors import ArtalignError
from base_models.imaging import square_crop
from base_models.io_utils import atomic_path
from evaluation.features import extract

FORMAT = "artalign-features-1"


def _fingerprint(extractor: nn.Module) -> str:
    fp = getattr(extractor, "fingerprint", None)
    if not isinstance(fp, str) or not fp:
        raise ArtalignError(
            f"feature extractor {type(extractor).__name__} has no `fingerprint`; build it with "
            "evaluation.features (or set a string fingerprint of its weights and preprocessing)"
        )
    return fp


def images_key(extractor: nn.Module, images: torch.Tensor, key_extra: str = "") -> str:
    """The cache key of `images` (N, 3, H, W) under `extractor`: their exact bytes, shape, dtype."""
    h = hashlib.sha256()
    h.update(f"{FORMAT}|{_fingerprint(extractor)}|{key_extra}|".encode())
    x = images.detach().to("cpu").contiguous()
    h.update(f"{x.dtype}|{tuple(x.shape)}|".encode())
    h.update(x.view(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.hexdigest()


class FeatureCache:
    """Features by content key, in memory and (with `dir`) as safetensors files in `dir`."""

    def __init__(self, dir: str | Path | None = None) -> None:
        self.dir = Path(dir) if dir is not None else None
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = 0  # lookups answered without computing (memory or disk)
        self.misses = 0  # lookups that ran the extractor

    def path(self, key: str) -> Path | None:
        return self.dir / f"{key}.safetensors" if self.dir is not None else None

    def load(self, key: str) -> torch.Tensor | None:
        """The stored features of `key` as float64, or None (absent or unreadable)."""
        if key in self._memory:
            return self._memory[key]
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            feats = load_file(str(path))["features"]
        except (SafetensorError, OSError, KeyError):
            return None  # a truncated or foreign file: recompute and overwrite it
        if feats.ndim != 2:
            return None
        feats = feats.to(torch.float64)
        self._memory[key] = feats
        return feats

    def save(
        self,
        key: str,
        features: torch.Tensor,
        meta: dict[str, str] | None = None,
        persist: bool = True,
    ) -> None:
        """Keep `features` (N, D) under `key`; on disk (unless `persist` is False) as float32
        when that loses nothing."""
        feats = features.detach().to("cpu", torch.float64).contiguous()
        self._memory[key] = feats
        path = self.path(key)
        if path is None or not persist:
            return
        as32 = feats.to(torch.float32)
        stored = as32 if torch.equal(as32.to(torch.float64), feats) else feats
        metadata = {"format": FORMAT, "n": str(len(feats)), "dim": str(feats.shape[1])}
        metadata.update(meta or {})
        with atomic_path(path) as tmp:
            save_file({"features": stored.contiguous()}, str(tmp), metadata=metadata)

    def get_or_compute_key(
        self,
        key: str,
        compute: Callable[[], torch.Tensor],
        meta: dict[str, str] | None = None,
        persist: bool = True,
    ) -> torch.Tensor:
        """The features stored under `key`, or `compute()`'s, which are then stored."""
        feats = self.load(key)
        if feats is not None:
            self.hits += 1
            return feats
        self.misses += 1
        feats = compute().to(torch.float64)
        self.save(key, feats, meta, persist)
        return self._memory[key]

    def get_or_compute(
        self,
        extractor: nn.Module,
        images: torch.Tensor,
        key_extra: str = "",
        batch_size: int = 256,
        persist: bool = True,
    ) -> torch.Tensor:
        """Features (N, D) float64 of `images` under `extractor`, computed at most once.

        `persist=False` keeps them in memory only (a model's samples, which no later run
        meets again); reference sets are worth the disk.
        """
        key = images_key(extractor, images, key_extra)
        meta = {"fingerprint": _fingerprint(extractor), "key_extra": key_extra}
        compute = lambda: extract(extractor, images, batch_size)  # noqa: E731
        return self.get_or_compute_key(key, compute, meta, persist)


def context_cache(ctx: Any) -> FeatureCache:
    """The one FeatureCache of an EvalContext (its `cache_dir`), shared by all its metrics."""
    cache = ctx.__dict__.get("_feature_cache")
    if cache is None:
        cache = ctx.__dict__["_feature_cache"] = FeatureCache(ctx.cache_dir)
    return cache


# ----------------------------------------------------------------------------- reference sets


def _pick(n_total: int, n: int | None, seed: int, path: str | Path) -> list[int]:
    if n is None or n == n_total:
        return list(range(n_total))
    if n < 1 or n > n_total:
        raise ArtalignError(
            f"reference set {path} has {n_total} images; n_reference must be 1..{n_total}, got {n}"
        )
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_total, size=n, replace=False))


def _decoded(records: Sequence[Any], size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Batches (B, 3, size, size) in [0, 1]: decoded, resized and centre-cropped as in training."""
    for start in range(0, len(records), batch_size):
        arrays = [square_crop(r.load_image(), size) for r in records[start : start + batch_size]]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        yield batch.to(torch.float32) / 255.0


def reference_features(
    ctx: Any,
    path: str | Path,
    extractor: nn.Module,
    n: int | None = None,
    size: int | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Features (N, D) float64 of the reference imagefolder at `path`, embedded at most once.

    `n` images are drawn at random (seeded by `ctx.seed`; all by default); each is resized and
    centre-cropped to `size` (the samples' size; default the first image's shorter side). The
    key hashes the image files' bytes, so a hit costs one read of the files and no decoding;
    within one context even that is done once. Images are decoded batch by batch, so memory
    holds the features, never the whole image set.
    """
    # lazy: torchvision
    from base_models.data.loaders import load_records

    fp = _fingerprint(extractor)
    memo = ctx.__dict__.setdefault("_reference_keys", {})
    memo_key = (str(Path(path).resolve()), n, size, fp, ctx.seed)
    records = None
    if memo_key not in memo:
        records = load_records(path, require_text=False)
        records = [records[i] for i in _pick(len(records), n, ctx.seed, path)]
        if size is None:
            size = min(records[0].load_image().size)
        h = hashlib.sha256(f"{FORMAT}|{fp}|reference|{size}|".encode())
        for rec in records:
            h.update(bytes.fromhex(rec.sha256()))
        memo[memo_key] = (h.hexdigest(), size)
    key, size = memo[memo_key]
    cache = context_cache(ctx)

    def compute() -> torch.Tensor:
        recs = records
        if recs is None:
            recs = load_records(path, require_text=False)
            recs = [recs[i] for i in _pick(len(recs), n, ctx.seed, path)]
        return extract(extractor, _decoded(recs, int(size), batch_size))

    meta = {"fingerprint": fp, "reference": str(path), "size": str(size)}
    return cache.get_or_compute_key(key, compute, meta)
