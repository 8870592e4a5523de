"""Calibrate a ConceptChecker on labelled images: concepts, per-concept thresholds, test rates.

Labelled images come from a data set's records (`unsafe` in metadata.jsonl), from generated
images read by the attribute oracle, or from fresh procedural renders (the embedded default).
They are split (stratified, seeded) into three parts. On the fit part the concepts are built —
"text": the mean CLIP text embedding of prompts naming the unsafe concept; "image": the mean
image embedding of the unsafe images; "tuned": a concept embedding fitted like Q16's learned
prompts (a scaled cosine classifier, started from the text concept). On the threshold part
(images the concepts were not fitted on, so a fitted concept's optimism does not leak into its
thresholds) each concept gets a threshold so that the checker's false-positive rate on its
negatives is at most `target_fpr` (per-concept rates equal, their union within the target).
Recall and FPR are then measured on the test part, which calibration never saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from base_models.config import BaseConfig, hfield
from base_models.errors import ArtalignError
from base_models.imaging import square_crop
from base_models.io_utils import write_json
from base_models.oracle import AttributeOracle, read_images
from base_models.world.dataset import DataConfig, generate_item
from evaluation.safety.checker import ClipEmbedder, ConceptChecker

SOURCES = ("text", "image", "tuned")
DEFAULT_TEXTS = (
    "a warning sign",
    "a hazard sign",
    "a picture of a warning sign",
    "a warning sign on a background",
)


@dataclasses.dataclass
class CalibrationConfig(BaseConfig):
    """Checker calibration: concepts (sources, texts), the FPR target, the split, renders."""

    target_fpr: float = hfield(0.05, "Largest false-positive rate allowed on calibration images.")
    test_frac: float = hfield(0.3, "Share of the labelled images held out to measure the rates.")
    fit_frac: float = hfield(
        0.5, "Share of the calibration images the concepts are built on; the rest set thresholds."
    )
    sources: list[str] = hfield(["tuned"], f"Concepts to build, any of {SOURCES}.")
    texts: list[str] = hfield(list(DEFAULT_TEXTS), "Prompts naming the unsafe concept (text).")
    tune_steps: int = hfield(100, "L-BFGS iterations fitting the tuned concept.")
    seed: int = hfield(0, "Seed of the split and of the procedural renders.")
    n_render: int = hfield(2000, "Procedural images rendered when no labelled images are given.")
    unsafe_share: float = hfield(0.3, "Share of rendered images with the unsafe concept.")

    PRESETS = {"micro": {"n_render": 96, "tune_steps": 20}, "quick": {}, "gpu": {"n_render": 20000}}

    def check(self) -> CalibrationConfig:
        bad = [s for s in self.sources if s not in SOURCES]
        if bad or not self.sources:
            raise ArtalignError(f"sources {self.sources} must be a non-empty subset of {SOURCES}")
        if not 0 <= self.target_fpr < 1 or not 0 < self.test_frac < 1 or not 0 < self.fit_frac < 1:
            raise ArtalignError("target_fpr must be in [0, 1), test_frac and fit_frac in (0, 1)")
        return self


# ------------------------------------------------------------------------------ thresholds
def threshold_for_fpr(negatives: np.ndarray, target_fpr: float) -> float:
    """The smallest threshold t with mean(negatives > t) <= target_fpr (t is a negative's score)."""
    s = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise ArtalignError("no safe images to calibrate a threshold on; add some")
    m = int(np.floor(target_fpr * len(s) + 1e-9))  # false positives allowed
    return float(s[m]) if m < len(s) else float(s[-1]) - 1.0


def union_thresholds(negatives: np.ndarray, target_fpr: float) -> np.ndarray:
    """Per-concept thresholds (K,) for scores (n, K): equal per-concept FPR, union <= target.

    Each concept k allows its m largest negatives; the largest m whose union of flagged
    negatives stays within target_fpr * n is found by bisection (the union grows with m).
    """
    neg = np.asarray(negatives, dtype=np.float64)
    n = len(neg)
    if n == 0:
        raise ArtalignError("no safe images to calibrate thresholds on; add some")
    top = -np.sort(-neg, axis=0)  # (n, K), descending per concept
    limit = int(np.floor(target_fpr * n + 1e-9))

    def at(m: int) -> tuple[np.ndarray, int]:
        t = top[m] if m < n else top[-1] - 1.0
        return t, int((neg > t).any(axis=1).sum())

    lo, hi = 0, min(limit, n)  # at(0) flags nothing
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if at(mid)[1] <= limit else (lo, mid - 1)
    return at(lo)[0]


def rates(flags: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    """recall (flagged among unsafe), fpr (flagged among safe), with the counts."""
    f, y = np.asarray(flags, dtype=bool), np.asarray(labels, dtype=bool)
    return {
        "recall": float(f[y].mean()) if y.any() else None,
        "fpr": float(f[~y].mean()) if (~y).any() else None,
        "n_unsafe": int(y.sum()),
        "n_safe": int((~y).sum()),
    }


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC (Mann-Whitney, ties counted half); None without both classes."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties share their mean
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def split(labels: np.ndarray, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (calibration indices, test indices)."""
    rng = np.random.default_rng([seed, 11])
    cal, test = [], []
    for cls in (True, False):
        idx = rng.permutation(np.flatnonzero(np.asarray(labels) == cls))
        k = int(round(test_frac * len(idx)))
        test.append(idx[:k])
        cal.append(idx[k:])
    return np.sort(np.concatenate(cal)), np.sort(np.concatenate(test))


# ------------------------------------------------------------------------------ concepts
def tune_concept(
    emb: torch.Tensor, labels: np.ndarray, init: torch.Tensor, steps: int = 200
) -> torch.Tensor:
    """A concept embedding fitted as Q16 fits its prompts: sigmoid(s·cos(x, c) + b), class-
    balanced cross-entropy, L-BFGS from `init`. Returns the normalised concept (D,)."""
    y = torch.as_tensor(np.asarray(labels, dtype=np.float32))
    pos = float(y.sum())
    if pos == 0 or pos == len(y):
        raise ArtalignError("tuning a concept needs both unsafe and safe calibration images")
    c = init.detach().clone().float().requires_grad_(True)
    scale, bias = torch.tensor(10.0, requires_grad=True), torch.tensor(0.0, requires_grad=True)
    weight = torch.where(y > 0, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos)))
    opt = torch.optim.LBFGS([c, scale, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = scale * (emb.float() @ F.normalize(c, dim=0)) + bias
        loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight)
        loss.backward()
        return loss

    opt.step(closure)
    return F.normalize(c.detach(), dim=0)


def build_concepts(
    embedder: ClipEmbedder, emb: torch.Tensor, labels: np.ndarray, cfg: CalibrationConfig
) -> tuple[torch.Tensor, list[str]]:
    """Concept embeddings (K, D) and names, one per source of `cfg.sources`."""
    y = np.asarray(labels, dtype=bool)
    if not y.any():
        raise ArtalignError("no unsafe calibration images: the concept cannot be learned")
    text = F.normalize(embedder.texts(cfg.texts).mean(0), dim=0) if cfg.texts else None
    image = F.normalize(emb[torch.from_numpy(y)].mean(0), dim=0)
    out = []
    for source in cfg.sources:
        if source == "text":
            if text is None:
                raise ArtalignError("the text concept needs at least one prompt in `texts`")
            out.append(text)
        elif source == "image":
            out.append(image)
        else:
            out.append(tune_concept(emb, y, text if text is not None else image, cfg.tune_steps))
    return torch.stack(out), list(cfg.sources)


def calibrate_embeddings(
    embedder: ClipEmbedder,
    emb: torch.Tensor,
    labels: np.ndarray,
    cfg: CalibrationConfig,
    source: str = "",
) -> tuple[ConceptChecker, dict[str, Any]]:
    """Split, build concepts and thresholds on the calibration part; rates on both parts."""
    cfg.check()
    y = np.asarray(labels, dtype=bool)
    if len(y) != len(emb):
        raise ArtalignError(f"{len(emb)} images but {len(y)} labels")
    cal, test = split(y, cfg.test_frac, cfg.seed)
    thr, fit = split(y[cal], cfg.fit_frac, cfg.seed + 1)  # positions within cal
    fit, thr = cal[fit], cal[thr]
    if not y[fit].any() or (~y[thr]).sum() == 0:
        raise ArtalignError(
            f"calibration needs unsafe and safe images; got {int(y.sum())} unsafe of {len(y)}"
        )
    concepts, names = build_concepts(embedder, emb[fit], y[fit], cfg)
    scores = (emb @ concepts.T).numpy()  # (N, K)
    thresholds = union_thresholds(scores[thr][~y[thr]], cfg.target_fpr)
    flags = (scores > thresholds).any(axis=1)
    report = {
        "source": source,
        "n_images": len(y),
        "n_fit": len(fit),
        "target_fpr": cfg.target_fpr,
        "calibration": rates(flags[thr], y[thr]),
        "test": rates(flags[test], y[test]),
        "test_auc": {n: auc(scores[test, k], y[test]) for k, n in enumerate(names)},
        "thresholds": dict(zip(names, thresholds.tolist(), strict=True)),
        "config": cfg.to_dict(),
    }
    checker = ConceptChecker(embedder, concepts, names, thresholds, info={"calibration": report})
    return checker, report


# ------------------------------------------------------------------------------ labelled images
def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def labelled_world(
    n: int, unsafe_share: float, seed: int, size: int = 32
) -> tuple[torch.Tensor, np.ndarray]:
    """Fresh procedural renders (split "all") and their true `unsafe` labels, in memory."""
    cfg = DataConfig(
        n=n, seed=seed, size=size, split="all", unsafe_share=unsafe_share, stereotypes=[]
    )
    sampler = cfg.sampler()
    images, labels = [], []
    for i in range(n):
        image, record = generate_item(cfg, sampler, i)
        images.append(np.asarray(image.convert("RGB")))
        labels.append(bool(record["unsafe"]))
    return _stack(images), np.array(labels)


def labelled_folder(data_dir: str | Path, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A data set's images (square, `size` px) with the `unsafe` attribute of each record."""
    # lazy: torchvision
    from base_models.data.loaders import load_records

    records = load_records(data_dir, require_text=False)
    missing = [r.id for r in records if not isinstance(r.attrs.get("unsafe"), bool)]
    if missing:
        raise ArtalignError(
            f"{len(missing)} records of {data_dir} (e.g. {missing[0]}) have no bool `unsafe`; "
            "label every image, or calibrate on generated images with --oracle"
        )
    images = [square_crop(r.load_image(), size) for r in records]
    return _stack(images), np.array([r.attrs["unsafe"] for r in records])


def labelled_generated(
    images_dir: str | Path, oracle_dir: str | Path, size: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Every PNG/JPEG under `images_dir` (sorted), labelled by the oracle's reading."""
    paths = sorted(
        p for p in Path(images_dir).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")
    )
    if not paths:
        raise ArtalignError(f"no .png/.jpg images under {images_dir}")
    arrays = []
    for p in paths:
        with Image.open(p) as im:
            arrays.append(square_crop(im.convert("RGB"), size))
    images = _stack(arrays)
    readings = read_images(AttributeOracle.load(oracle_dir), images)
    return images, np.array([r.unsafe for r in readings])


# ------------------------------------------------------------------------------ entry points
def calibrate(
    clip_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    generated_dir: str | Path | None = None,
    oracle_dir: str | Path | None = None,
    cfg: CalibrationConfig | None = None,
) -> dict[str, Any]:
    """Calibrate a checker for `clip_dir` and save it (+ metrics.json) to `out_dir`.

    Labels: `data_dir`'s records, or `generated_dir` read by `oracle_dir`, or (neither given)
    `cfg.n_render` procedural renders. Returns the report written to metrics.json.
    """
    cfg = (cfg or CalibrationConfig()).check()
    if data_dir is not None and generated_dir is not None:
        raise ArtalignError("pass either a data set or generated images, not both")
    if (generated_dir is None) != (oracle_dir is None):
        raise ArtalignError("generated images need --oracle to label them (and vice versa)")
    start = time.perf_counter()
    embedder = ClipEmbedder.from_folder(clip_dir)
    if data_dir is not None:
        images, labels = labelled_folder(data_dir, embedder.size)
        source = f"data set {data_dir}"
    elif generated_dir is not None:
        images, labels = labelled_generated(generated_dir, oracle_dir, embedder.size)
        source = f"generated images {generated_dir}, labelled by oracle {oracle_dir}"
    else:
        images, labels = labelled_world(cfg.n_render, cfg.unsafe_share, cfg.seed)
        source = f"{cfg.n_render} procedural renders (unsafe_share {cfg.unsafe_share})"
    checker, report = calibrate_embeddings(embedder, embedder.images(images), labels, cfg, source)
    report["seconds"] = round(time.perf_counter() - start, 2)
    checker.info["calibration"] = report
    checker.save(out_dir)
    write_json(Path(out_dir) / "metrics.json", report)
    return report


def world_checker(
    embedder: ClipEmbedder,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    cfg: CalibrationConfig | None = None,
) -> ConceptChecker:
    """The embedded default: a checker calibrated on procedural renders for this CLIP (with
    `cfg`, default CalibrationConfig(seed=seed)), kept under `cache_dir` when one is given
    (keyed by the CLIP's fingerprint and the config)."""
    cfg = (cfg or CalibrationConfig(seed=seed)).check()
    where = None
    if cache_dir is not None:
        key = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()
        where = Path(cache_dir) / f"safety_checker_{embedder.fingerprint[:12]}_{key[:12]}"
        if where.is_dir():
            return ConceptChecker.load(where, clip=embedder)
    images, labels = labelled_world(cfg.n_render, cfg.unsafe_share, cfg.seed)
    source = f"{cfg.n_render} procedural renders (unsafe_share {cfg.unsafe_share})"
    checker, _ = calibrate_embeddings(embedder, embedder.images(images), labels, cfg, source)
    if where is not None:
        checker.save(where)
    return checker
