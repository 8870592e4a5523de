"""Image quality against a reference set: FID, KID, precision/recall, density/coverage, FD∞.

The distances are pure functions of two feature matrices, real (N, D) and fake (M, D); the
registered metrics (aspect "quality") embed a model's samples and the reference imagefolder
(`--reference DIR`) with the context's feature extractor and call them.

- FID (Heusel et al. 2017): ‖μ_r − μ_f‖² + tr Σ_r + tr Σ_f − 2 tr (Σ_r Σ_f)^½. The means and
  covariances are torchmetrics' `FrechetInceptionDistance` float64 running sums (fed features
  through a pass-through extractor, in chunks: memory holds D×D sums, not the features), and the
  trace term is Σ √λ of the symmetric PSD matrix Lᵀ Σ_f L (Σ_r = L Lᵀ, Cholesky; the eigh
  square root when Σ_r is singular), which has the eigenvalues of Σ_r Σ_f: a Cholesky and a
  symmetric eigenvalue solve instead of a general eigensolver (torchmetrics) or a matrix square
  root (scipy), so it is faster, real by construction, and never NaN or complex when few
  samples make the covariances singular.
- KID (Bińkowski et al. 2018): torchmetrics' `KernelInceptionDistance`, unbiased MMD² with the
  cubic polynomial kernel, mean and std over random subsets (seeded).
- Precision / recall (Kynkäänniemi et al. 2019): the share of fake samples inside the real
  manifold (the union of balls around each real sample reaching its k-th nearest real
  neighbour, k=3) and of real samples inside the fake manifold.
- Density / coverage (Naeem et al. 2020): density counts how many real balls hold each fake
  sample (/k, mean over fakes; 1 for matching distributions); coverage is the share of real
  samples whose ball holds at least one fake sample (k=5, the paper's choice).
- FD∞ (Chong & Forsyth 2020): FID is biased upwards by a term ∝ 1/M; FID at several sample
  sizes M, fitted linearly against 1/M, extrapolates to M → ∞ (the fit's intercept).

FID, FD∞ and KID carry no CI (a bootstrap would recompute a D×D eigendecomposition hundreds
of times; `kid` reports the spread over its subsets as a second figure, `kid_std`);
precision, recall, density and coverage are means over samples and carry a bootstrap CI over
those samples, the other set's manifold held fixed (precision and density, means over generated
images, resample prompts with all their seeds; recall and coverage resample reference images).
Below a metric's minimum sample size the functions raise ArtalignError, never return NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from base_models.errors import ArtalignError
from evaluation.context import EvalContext, Samples
from evaluation.feature_cache import context_cache, reference_features
from evaluation.registry import register_metric
from evaluation.stats import Figure, mean_figure

MIN_FID = 2  # a covariance needs two samples
MIN_KID = 2  # the unbiased MMD² divides by m (m − 1)
MIN_FD_INFINITY = 10  # enough for several distinct sample sizes
PR_K = 3  # Kynkäänniemi et al. 2019
DC_K = 5  # Naeem et al. 2020
_FIX = {
    "fake": "raise seeds_per_prompt or the prompt count",
    "real": "add images to the reference set (or raise n_reference)",
}


def _too_few(what: str, minimum: int, n: int, side: str) -> ArtalignError:
    which = "generated" if side == "fake" else "reference"
    return ArtalignError(
        f"{what} needs at least {minimum} images per side; got {n} {which} images — {_FIX[side]}"
    )


def _matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ArtalignError(f"{name} features must be (N, D); got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        raise ArtalignError(f"{name} features hold NaN or inf; check the extractor and images")
    return t


def _pair(real: Any, fake: Any, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    r, f = _matrix(real, "real"), _matrix(fake, "fake")
    if device is not None:
        r, f = r.to(device), f.to(device)
    if r.shape[1] != f.shape[1]:
        raise ArtalignError(
            f"real and fake features differ in width ({r.shape[1]} vs {f.shape[1]}); "
            "embed both with the same extractor"
        )
    return r, f


# ----------------------------------------------------------------------------- FID


class _PassThrough(nn.Module):
    """The 'feature extractor' torchmetrics runs on features that are already extracted."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _fold_rows(dim: int) -> int:
    return max(1024, (1 << 25) // max(dim, 1))  # rows per update: ≤ 256 MiB as float64


def _batches(
    x: torch.Tensor | Iterable[torch.Tensor], chunk: int | None = None
) -> Iterator[torch.Tensor]:
    """Row chunks of a matrix (default size: _fold_rows of its width), or the given batches."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(x)
        chunk = chunk or _fold_rows(t.shape[-1] if t.ndim else 1)
        yield from (t[i : i + chunk] for i in range(0, len(t), chunk))
    else:
        yield from (torch.as_tensor(b) for b in x)


class _FrechetSums:
    """torchmetrics' running float64 sums (Σx, Σxxᵀ, n) of the real and the fake features."""

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        self.dim = dim
        self.metric = FrechetInceptionDistance(feature=_PassThrough(dim), reset_real_features=False)
        self.metric.to(device)

    def add(
        self, features: torch.Tensor | Iterable[torch.Tensor], real: bool, chunk: int | None = None
    ) -> int:
        """Fold (B, D) batches into one side's sums (torchmetrics casts them to float64)."""
        side = "real" if real else "fake"
        for b in _batches(features, chunk):
            if b.ndim != 2:
                raise ArtalignError(f"{side} features must be (N, D); got {tuple(b.shape)}")
            if b.shape[1] != self.dim:
                raise ArtalignError(
                    f"real and fake features differ in width ({self.dim} vs {b.shape[1]}); "
                    "embed both with the same extractor"
                )
            self.metric.update(b.to(self.metric.device), real=real)
        m = self.metric
        total = m.real_features_sum if real else m.fake_features_sum
        if not torch.isfinite(total).all():  # any NaN / inf feature reaches its column's sum
            raise ArtalignError(f"{side} features hold NaN or inf; check the extractor and images")
        return int(m.real_features_num_samples if real else m.fake_features_num_samples)

    def clear_fake(self) -> None:
        self.metric.reset()  # reset_real_features=False keeps the real sums

    def moments(self, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased covariance, computed from the sums exactly as torchmetrics does."""
        m = self.metric
        if real:
            s, ss, n = m.real_features_sum, m.real_features_cov_sum, m.real_features_num_samples
        else:
            s, ss, n = m.fake_features_sum, m.fake_features_cov_sum, m.fake_features_num_samples
        mean = (s / n).unsqueeze(0)
        cov = (ss - n * mean.t().mm(mean)) / (n - 1)
        return mean.squeeze(0), cov


def _psd_factor(cov: torch.Tensor) -> torch.Tensor:
    """F with F Fᵀ = cov: Cholesky when cov is positive definite (n³/3 flops), else the
    symmetric square root by eigh, its negative rounding-noise eigenvalues clipped to 0."""
    sym = (cov + cov.T) / 2
    chol, info = torch.linalg.cholesky_ex(sym)
    if int(info) == 0:
        return chol
    w, v = torch.linalg.eigh(sym)  # singular: fewer samples than dimensions
    return (v * w.clamp(min=0).sqrt()) @ v.T


class _RealSide:
    """The reference's moments and a factor F of Σ_r, computed once for any number of fakes.

    Σ_r Σ_f = F Fᵀ Σ_f has the eigenvalues of Fᵀ Σ_f F, which is symmetric PSD, so
    tr (Σ_r Σ_f)^½ is the sum of the square roots of its (real, non-negative) eigenvalues.
    """

    def __init__(self, sums: _FrechetSums) -> None:
        self.mean, self.cov = sums.moments(real=True)
        self.factor = _psd_factor(self.cov)

    def distance(self, mean_f: torch.Tensor, cov_f: torch.Tensor) -> float:
        m = self.factor.T @ cov_f @ self.factor
        tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
        d = (self.mean - mean_f).square().sum() + self.cov.trace() + cov_f.trace() - 2 * tr_sqrt
        return max(float(d), 0.0)  # rounding can leave -1e-12 for identical sets


def frechet_distance(
    real: torch.Tensor | Iterable[torch.Tensor],
    fake: torch.Tensor | Iterable[torch.Tensor],
    chunk: int | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """FID between real and fake features: (N, D) tensors or iterables of (B, D) batches.

    Batches are folded into running sums as they come, so a feature stream of any length
    needs O(D²) memory; a whole tensor is folded in row chunks of `chunk` (default: 256 MiB of
    float64 each).
    """
    real_it, fake_it = _batches(real, chunk), _batches(fake, chunk)
    first = next(real_it, None)
    if first is None:
        raise _too_few("FID", MIN_FID, 0, "real")
    if first.ndim != 2:
        raise ArtalignError(f"real features must be (N, D); got {tuple(first.shape)}")
    sums = _FrechetSums(first.shape[1], device)
    sums.add([first], real=True, chunk=chunk)
    n_real = sums.add(real_it, real=True, chunk=chunk)
    n_fake = sums.add(fake_it, real=False, chunk=chunk)
    if n_real < MIN_FID:
        raise _too_few("FID", MIN_FID, n_real, "real")
    if n_fake < MIN_FID:
        raise _too_few("FID", MIN_FID, n_fake, "fake")
    return _RealSide(sums).distance(*sums.moments(real=False))


@dataclass(frozen=True)
class FdInfinity:
    """FD∞ and the fit it comes from: FID(M) ≈ value + slope / M."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    fids: tuple[float, ...]


def fd_infinity(
    real: torch.Tensor,
    fake: torch.Tensor,
    n_points: int = 10,
    min_fraction: float = 0.2,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> FdInfinity:
    """FD∞ (Chong & Forsyth 2020): FID at `n_points` fake sample sizes from `min_fraction`·M
    (at least D + 1 where M allows) to M, each a fresh random subset against the whole real
    set, extrapolated linearly in 1/M to 0. Like any unbiased estimate of a distance near 0,
    it can come out slightly negative."""
    r, f = _pair(real, fake)
    if len(r) < MIN_FID:
        raise _too_few("FD∞", MIN_FID, len(r), "real")
    if len(f) < MIN_FD_INFINITY:
        raise _too_few("FD∞", MIN_FD_INFINITY, len(f), "fake")
    if not 0 < min_fraction < 1 or n_points < 3:
        raise ArtalignError(
            f"FD∞ needs 0 < min_fraction < 1 and n_points >= 3; got {min_fraction}, {n_points}"
        )
    lo = max(MIN_FID, round(min_fraction * len(f)))
    if lo <= r.shape[1] and len(f) >= 2 * (r.shape[1] + 1):
        lo = r.shape[1] + 1  # below D samples Σ_f is singular and FID leaves the a + b/M law
    sizes = sorted({int(s) for s in np.linspace(lo, len(f), n_points).round()})
    if len(sizes) < 3:
        raise _too_few("FD∞", MIN_FD_INFINITY, len(f), "fake")
    sums = _FrechetSums(r.shape[1], device)
    sums.add(r, real=True)
    side = _RealSide(sums)
    rng = np.random.default_rng(seed)
    fids = []
    for m in sizes:
        sums.clear_fake()
        idx = torch.from_numpy(np.sort(rng.choice(len(f), size=m, replace=False)))
        sums.add(f[idx], real=False)
        fids.append(side.distance(*sums.moments(real=False)))
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=np.float64), fids, 1)
    return FdInfinity(float(intercept), float(slope), tuple(sizes), tuple(fids))


# ----------------------------------------------------------------------------- KID


def kernel_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float, int]:
    """KID: mean and std of the unbiased polynomial-kernel MMD² over `subsets` random subsets.

    The subset size is min(subset_size, N, M). Returns (mean, std, subset size used). All
    features are held (the metric needs them for its subsets), in float64.
    """
    r, f = _pair(real, fake, device)
    for n, side in ((len(r), "real"), (len(f), "fake")):
        if n < MIN_KID:
            raise _too_few("KID", MIN_KID, n, side)
    size = min(subset_size, len(r), len(f))
    if size < MIN_KID or subsets < 1:
        raise ArtalignError(f"KID needs subset_size >= {MIN_KID} and subsets >= 1")
    with warnings.catch_warnings():  # "KID will save all extracted features": that is intended
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=_PassThrough(r.shape[1]),
            subsets=subsets,
            subset_size=size,
            degree=degree,
            gamma=None if gamma is None else float(gamma),
            coef=float(coef),
        )
    metric.to(device)
    metric.update(r, real=True)
    metric.update(f, real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets with torch.randperm
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


# ----------------------------------------------------------------------------- k-NN manifolds


def _chunk_rows(n_cols: int) -> int:
    return max(1, min(4096, (1 << 25) // max(n_cols, 1)))  # ≤ 256 MiB of float64 distances


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance from each row of x to its k-th nearest other row."""
    x = _matrix(x, "manifold")
    if len(x) <= k:
        raise ArtalignError(f"a k-NN radius with k={k} needs more than {k} points; got {len(x)}")
    step = _chunk_rows(len(x))
    out = [
        torch.cdist(x[i : i + step], x).kthvalue(k + 1, dim=1).values  # +1: itself, at 0
        for i in range(0, len(x), step)
    ]
    return torch.cat(out)


def _ball_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(P,) how many balls B(centre_j, radius_j) hold each point (boundary included)."""
    step = _chunk_rows(len(centres))
    return torch.cat(
        [
            (torch.cdist(points[i : i + step], centres) <= radii).sum(dim=1)
            for i in range(0, len(points), step)
        ]
    )


def _nearest(points: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    step = _chunk_rows(len(others))
    return torch.cat(
        [
            torch.cdist(points[i : i + step], others).min(dim=1).values
            for i in range(0, len(points), step)
        ]
    )


def _check_knn(what: str, real: torch.Tensor, fake: torch.Tensor, k: int) -> None:
    if k < 1:
        raise ArtalignError(f"{what} needs k >= 1; got {k}")
    for n, side in ((len(real), "real"), (len(fake), "fake")):
        if n <= k:
            raise _too_few(f"{what} with k={k}", k + 1, n, side)


def precision_recall_items(
    real: torch.Tensor, fake: torch.Tensor, k: int = PR_K, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item indicators: (fake inside the real manifold, real inside the fake manifold)."""
    r, f = _pair(real, fake, device)
    _check_knn("precision/recall", r, f, k)
    in_real = _ball_counts(f, r, knn_radii(r, k)) > 0
    in_fake = _ball_counts(r, f, knn_radii(f, k)) > 0
    return in_real.double().cpu().numpy(), in_fake.double().cpu().numpy()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019)."""
    p, r = precision_recall_items(real, fake, k)
    return float(p.mean()), float(r.mean())


def density_coverage_items(
    real: torch.Tensor, fake: torch.Tensor, k: int = DC_K, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item values: (real balls holding each fake / k, real ball holds some fake)."""
    r, f = _pair(real, fake, device)
    _check_knn("density/coverage", r, f, k)
    radii = knn_radii(r, k)
    density = _ball_counts(f, r, radii).double() / k
    covered = _nearest(r, f) <= radii
    return density.cpu().numpy(), covered.double().cpu().numpy()


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = DC_K) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020)."""
    d, c = density_coverage_items(real, fake, k)
    return float(d.mean()), float(c.mean())


# ----------------------------------------------------------------------------- registered metrics


def quality_features(
    ctx: EvalContext,
    samples: Samples,
    on: str | None = None,
    extractor: str | None = None,
    extractor_params: dict[str, Any] | None = None,
    n_reference: int | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference features, sample features), each embedded once per context and cached.

    The reference is `ctx.reference_path` (an imagefolder), resized to the samples' size.
    The extractor is `extractor` (default `ctx.extractor`), built with `extractor_params`
    (default `ctx.settings["extractor_params"]`, e.g. {"weights": FILE} for inception).
    """
    if ctx.reference_path is None:
        raise ArtalignError(
            "quality metrics (fid, kid, ...) need real images to compare with; pass "
            "--reference DIR (an imagefolder, e.g. a data set made by `artalign data make`)"
        )
    picked = samples.of_set(on, "quality")
    if extractor_params is None:  # a run may set them once for all metrics
        extractor_params = ctx.settings.get("extractor_params") or {}
    net = ctx.features(extractor, **extractor_params)
    size = int(min(picked.images.shape[-2:]))
    real = reference_features(
        ctx, ctx.reference_path, net, n=n_reference, size=size, batch_size=batch_size
    )
    fake = context_cache(ctx).get_or_compute(
        net, picked.images, batch_size=batch_size, persist=False
    )
    return real, fake


def _split(name: str, params: dict[str, Any], **defaults: Any) -> tuple[dict, dict]:
    """(feature params, this metric's params with defaults); unknown names are an error,
    raised before anything is embedded."""
    keys = ("on", "extractor", "extractor_params", "n_reference", "batch_size")
    feature = {k: params.pop(k) for k in keys if k in params}
    own = {k: params.pop(k, v) for k, v in defaults.items()}
    if params:
        known = ", ".join((*keys, *defaults))
        raise ArtalignError(
            f"metric {name} has no parameter(s) {', '.join(sorted(params))}; known: {known}"
        )
    return feature, own


@register_metric("fid", aspect="quality", higher_is_better=False)
def fid_metric(ctx: EvalContext, samples: Samples, **params: Any) -> dict[str, Figure]:
    """Fréchet distance between sample and reference features (ci None: no cheap bootstrap)."""
    feature, _ = _split("fid", params)
    real, fake = quality_features(ctx, samples, **feature)
    value = frechet_distance(real, fake, device=ctx.device)
    return {"fid": Figure(value, len(fake), None, False)}


@register_metric("kid", aspect="quality", higher_is_better=False)
def kid_metric(ctx: EvalContext, samples: Samples, **params: Any) -> dict[str, Figure]:
    """Kernel distance (unbiased MMD², cubic kernel), mean and std over random subsets."""
    feature, p = _split("kid", params, subsets=100, subset_size=1000, degree=3)
    real, fake = quality_features(ctx, samples, **feature)
    mean, std, _ = kernel_distance(
        real,
        fake,
        subsets=int(p["subsets"]),
        subset_size=int(p["subset_size"]),
        degree=int(p["degree"]),
        seed=ctx.seed,
        device=ctx.device,
    )
    return {"kid": Figure(mean, len(fake), None, False), "kid_std": Figure(std, int(p["subsets"]))}


def _knn_figures(
    ctx: EvalContext,
    samples: Samples,
    params: dict[str, Any],
    name: str,
    k: int,
    items: Any,
    keys: tuple[str, str],
) -> dict[str, Figure]:
    """Two per-sample k-NN figures (means with bootstrap CIs) of the metric `name`.

    `items` gives one value per generated image (CI over its prompts), then one per reference
    image (CI over images).
    """
    feature, p = _split(name, params, k=k)
    real, fake = quality_features(ctx, samples, **feature)
    first, second = items(real, fake, int(p["k"]), ctx.device)
    prompts = samples.of_set(feature.get("on"), "quality").prompts  # the images `fake` embeds
    return {
        keys[0]: mean_figure(first, True, ctx.n_boot, ctx.seed, prompts),
        keys[1]: mean_figure(second, True, ctx.n_boot, ctx.seed),
    }


@register_metric("precision_recall", aspect="quality", higher_is_better=True)
def precision_recall_metric(ctx: EvalContext, samples: Samples, **params: Any) -> dict[str, Figure]:
    """Improved precision (fidelity) and recall (diversity), k-NN manifolds with k=3."""
    return _knn_figures(
        ctx,
        samples,
        params,
        "precision_recall",
        PR_K,
        precision_recall_items,
        ("precision", "recall"),
    )


@register_metric("density_coverage", aspect="quality", higher_is_better=True)
def density_coverage_metric(ctx: EvalContext, samples: Samples, **params: Any) -> dict[str, Figure]:
    """Density and coverage (Naeem et al. 2020), k-NN balls around reference samples, k=5."""
    return _knn_figures(
        ctx,
        samples,
        params,
        "density_coverage",
        DC_K,
        density_coverage_items,
        ("density", "coverage"),
    )


@register_metric("fd_infinity", aspect="quality", higher_is_better=False)
def fd_infinity_metric(ctx: EvalContext, samples: Samples, **params: Any) -> dict[str, Figure]:
    """FID extrapolated to infinitely many samples (Chong & Forsyth 2020)."""
    feature, p = _split("fd_infinity", params, n_points=10, min_fraction=0.2)
    real, fake = quality_features(ctx, samples, **feature)
    fit = fd_infinity(
        real,
        fake,
        n_points=int(p["n_points"]),
        min_fraction=float(p["min_fraction"]),
        seed=ctx.seed,
        device=ctx.device,
    )
    return {"fd_infinity": Figure(fit.value, len(fake), None, False)}
