"""Quality metrics: FID against float64 scipy, clean-fid and torchmetrics; KID against a hand
MMD²; precision/recall and density/coverage on point sets with known answers; FD∞; the
registered metrics end to end on a micro CLIP and a 16-image reference folder."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from base_models.errors import ArtalignError
from evaluation.context import EvalContext, Samples
from evaluation.feature_cache import context_cache
from evaluation.quality import (
    density_coverage,
    fd_infinity,
    frechet_distance,
    kernel_distance,
    knn_radii,
    precision_recall,
)
from evaluation.registry import get_metric, metric_names

QUALITY = ("fid", "kid", "precision_recall", "density_coverage", "fd_infinity")


def _gaussians(n_real: int, n_fake: int, dim: int, seed: int = 0):
    """Correlated Gaussian features, the fake set shifted and rescaled."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    real = torch.randn(n_real, dim, generator=g, dtype=torch.float64) @ mix
    fake = 1.3 * torch.randn(n_fake, dim, generator=g, dtype=torch.float64) @ mix + 0.2
    return real, fake


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """The textbook float64 reference: np.cov and scipy.linalg.sqrtm."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# ----------------------------------------------------------------------------- FID


@pytest.mark.parametrize("dim", [16, 64])
def test_fid_matches_float64_scipy_and_clean_fid(dim):
    from cleanfid.fid import fid_from_feats

    real, fake = _gaussians(600, 400, dim)
    ours = frechet_distance(real, fake)
    ref = scipy_fid(real.numpy(), fake.numpy())
    assert ref > 1.0
    assert abs(ours - ref) / ref <= 1e-4
    clean = float(fid_from_feats(real.numpy(), fake.numpy()))
    assert abs(ours - clean) / clean <= 1e-4


def test_fid_matches_torchmetrics_used_directly():
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _gaussians(300, 200, 24, seed=1)
    ident = torch.nn.Identity()
    ident.num_features = 24
    metric = FrechetInceptionDistance(feature=ident)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    tm = float(metric.compute())
    assert abs(frechet_distance(real, fake) - tm) / tm <= 1e-6


def test_fid_streams_batches_and_is_symmetric():
    real, fake = _gaussians(500, 300, 8, seed=2)
    whole = frechet_distance(real, fake)
    streamed = frechet_distance(iter(real.split(77)), iter(fake.split(50)), chunk=64)
    assert streamed == pytest.approx(whole, rel=1e-10)
    assert frechet_distance(fake, real) == pytest.approx(whole, rel=1e-8)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)


def test_fid_on_nearly_singular_covariances_matches_scipy():
    """70 samples in 64 dimensions: Σ_r is positive definite but ill-conditioned."""
    real, fake = _gaussians(70, 80, 64, seed=11)
    ref = scipy_fid(real.numpy(), fake.numpy())
    assert abs(frechet_distance(real, fake) - ref) / ref <= 1e-4


def test_fid_with_fewer_samples_than_dimensions_is_finite():
    """Singular covariances (N < D): scipy's sqrtm goes complex or NaN here; ours stays real."""
    real, fake = _gaussians(20, 10, 64, seed=3)
    value = frechet_distance(real, fake)
    assert np.isfinite(value) and value > 0
    hand = scipy_fid(real.numpy(), fake.numpy())  # the real part still agrees
    assert value == pytest.approx(hand, rel=1e-3)


def test_below_minimum_sample_sizes_raise_clear_errors():
    real, fake = _gaussians(50, 50, 4)
    with pytest.raises(ArtalignError, match="FID needs at least 2 .* got 1 generated.*seeds_per"):
        frechet_distance(real, fake[:1])
    with pytest.raises(ArtalignError, match="got 1 reference"):
        frechet_distance(real[:1], fake)
    with pytest.raises(ArtalignError, match="KID needs at least 2"):
        kernel_distance(real, fake[:1])
    with pytest.raises(ArtalignError, match="k=3 needs at least 4 .* got 3"):
        precision_recall(real, fake[:3])
    with pytest.raises(ArtalignError, match="k=5 needs at least 6"):
        density_coverage(real[:5], fake)
    with pytest.raises(ArtalignError, match="FD∞ needs at least 10"):
        fd_infinity(real, fake[:9])
    with pytest.raises(ArtalignError, match="differ in width"):
        frechet_distance(real, fake[:, :3])
    nan = fake.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ArtalignError, match="NaN"):
        frechet_distance(real, nan)


# ----------------------------------------------------------------------------- KID


def hand_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef: float = 1.0) -> float:
    """Unbiased MMD² with k(a, b) = (a·b / d + coef)^degree, written out with loops' sums."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (a @ b.T / d + coef) ** degree  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(same - 2 * kxy.sum() / m**2)


def test_kid_matches_a_hand_mmd_on_one_subset():
    real, fake = _gaussians(40, 40, 6, seed=4)
    mean, std, size = kernel_distance(real, fake, subsets=1, subset_size=40)
    assert size == 40 and std == 0.0
    assert mean == pytest.approx(hand_mmd2(real.numpy(), fake.numpy()), rel=1e-9)


def test_kid_subsets_are_capped_and_seeded():
    real, fake = _gaussians(60, 25, 6, seed=5)
    a = kernel_distance(real, fake, subsets=5, subset_size=1000, seed=1)
    assert a[2] == 25 and a[1] > 0
    assert kernel_distance(real, fake, subsets=5, subset_size=1000, seed=1) == a
    assert kernel_distance(real, fake, subsets=5, subset_size=1000, seed=2) != a


# ----------------------------------------------------------------------------- k-NN manifolds


def _line(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).unsqueeze(1)


def test_knn_radii_by_hand():
    x = _line([0, 1, 2, 3, 10])
    assert knn_radii(x, 1).tolist() == [1, 1, 1, 1, 7]
    assert knn_radii(x, 2).tolist() == [2, 1, 1, 2, 8]


def test_precision_recall_density_coverage_on_a_hand_made_line():
    """real 0,1,2,3,10 (k=1 radii 1,1,1,1,7); fake 0.5, 10.5, 20 (radii 10, 9.5, 9.5).

    precision: 0.5 in B(0), 10.5 in B(10), 20 in none -> 2/3; recall: every real point is
    within 10 of 0.5 or 0.5 of 10.5 -> 1; density: 0.5 in B(0), B(1); 10.5 in B(10) -> 3/3;
    coverage: 0, 1, 10 have a fake within their radius, 2 and 3 do not -> 3/5.
    """
    real, fake = _line([0, 1, 2, 3, 10]), _line([0.5, 10.5, 20])
    p, r = precision_recall(real, fake, k=1)
    assert (p, r) == (pytest.approx(2 / 3), 1.0)
    d, c = density_coverage(real, fake, k=1)
    assert (d, c) == (pytest.approx(1.0), pytest.approx(3 / 5))


def test_identical_and_far_apart_sets():
    real, _ = _gaussians(200, 1, 5, seed=6)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    density, coverage = density_coverage(real, real.clone())
    assert coverage == 1.0 and density >= 1.0  # each point sits at least in its own ball
    far = real + 1000.0
    assert precision_recall(real, far) == (0.0, 0.0)
    assert density_coverage(real, far) == (0.0, 0.0)


def test_same_distribution_scores_near_one():
    g = torch.Generator().manual_seed(9)
    real = torch.randn(1000, 4, generator=g, dtype=torch.float64)
    fake = torch.randn(1000, 4, generator=g, dtype=torch.float64)
    p, r = precision_recall(real, fake)
    d, c = density_coverage(real, fake)
    assert p > 0.85 and r > 0.85 and c > 0.9
    assert d == pytest.approx(1.0, abs=0.1)  # Naeem et al.: E[density] = 1 for equal laws


# ----------------------------------------------------------------------------- FD∞


def test_fd_infinity_removes_the_small_sample_bias():
    """FID of 500 samples overshoots the FID of 20 000; FD∞ from the same 500 lands near it."""
    g = torch.Generator().manual_seed(2)
    real = torch.randn(20000, 32, generator=g, dtype=torch.float64)
    fake = 1.2 * torch.randn(500, 32, generator=g, dtype=torch.float64) + 0.1
    large = 1.2 * torch.randn(20000, 32, generator=g, dtype=torch.float64) + 0.1
    fid_large = frechet_distance(real, large)
    fid_500 = frechet_distance(real, fake)
    fit = fd_infinity(real, fake, n_points=10, seed=2)
    assert fid_large == pytest.approx(32 * 0.01 + 32 * (1 + 1.44 - 2.4), rel=0.05)  # analytic
    assert fid_500 > 1.3 * fid_large
    assert abs(fit.value - fid_large) < 0.1 * fid_large
    assert abs(fit.value - fid_large) < 0.5 * abs(fid_500 - fid_large)
    assert fit.slope > 0 and fit.sizes[0] == 100 and fit.sizes[-1] == 500
    assert fit.fids[-1] == pytest.approx(fid_500, rel=1e-9)


# ----------------------------------------------------------------------------- registered metrics


def _reference_images(folder) -> torch.Tensor:
    from base_models.data.loaders import load_records

    arrays = [np.asarray(r.load_image(), dtype=np.uint8) for r in load_records(folder)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _samples(images: torch.Tensor, sets: list[str]) -> Samples:
    n = len(images)
    items = [{"set": s, "prompt": f"p{i}"} for i, s in enumerate(sets)]
    return Samples(images, [f"p{i}" for i in range(n)], list(range(n)), items, "m")


def test_quality_metrics_are_registered():
    names = metric_names()
    for name in QUALITY:
        assert name in names and get_metric(name).aspect == "quality"
    assert get_metric("fid").higher_is_better is False
    assert get_metric("precision_recall").higher_is_better is True


def test_quality_metrics_end_to_end(micro_clip, micro_data, tmp_path):
    ref = _reference_images(micro_data)  # 16 images, 32 px
    noisy = ref + 0.3 * torch.rand(ref.shape, generator=torch.Generator().manual_seed(0))
    images = torch.cat([ref, noisy.clamp(0, 1)])
    samples = _samples(images, ["same"] * 16 + ["noisy"] * 16)
    ctx = EvalContext(
        clip_path=micro_clip, reference_path=micro_data, cache_dir=tmp_path / "cache", n_boot=50
    )
    fid = get_metric("fid").fn
    same = fid(ctx, samples, on="same")["fid"]
    assert same.value == pytest.approx(0.0, abs=1e-6)  # the reference itself: same pixels
    assert same.n == 16 and same.ci is None and same.higher_is_better is False
    assert fid(ctx, samples, on="noisy")["fid"].value > 0.01
    kid = get_metric("kid").fn(ctx, samples, on="noisy", subsets=5)
    assert set(kid) == {"kid", "kid_std"} and kid["kid"].n == 16
    pr = get_metric("precision_recall").fn(ctx, samples, on="same")
    assert pr["precision"].value == 1.0 and pr["recall"].value == 1.0
    assert pr["precision"].ci == (1.0, 1.0)
    dc = get_metric("density_coverage").fn(ctx, samples, on="noisy")
    lo, hi = dc["coverage"].ci
    assert 0 <= lo <= dc["coverage"].value <= hi <= 1 and dc["coverage"].n == 16
    fdi = get_metric("fd_infinity").fn(ctx, samples)
    assert np.isfinite(fdi["fd_infinity"].value) and fdi["fd_infinity"].n == 32
    # the reference was embedded once for all of them, and written to the cache folder
    cache = context_cache(ctx)
    assert cache.misses == 4  # reference, "same", "noisy", all samples
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_quality_metric_errors_name_the_fix(micro_clip, micro_data):
    images = torch.rand(4, 3, 32, 32)
    samples = _samples(images, ["a"] * 4)
    with pytest.raises(ArtalignError, match="--reference DIR"):
        get_metric("fid").fn(EvalContext(clip_path=micro_clip), samples)
    ctx = EvalContext(clip_path=micro_clip, reference_path=micro_data)
    with pytest.raises(ArtalignError, match="prompt set 'composition'"):
        get_metric("fid").fn(ctx, samples, on="composition")
    with pytest.raises(ArtalignError, match="no parameter.*subsets"):  # before any embedding
        get_metric("fid").fn(EvalContext(reference_path=micro_data), samples, subsets=3)
    with pytest.raises(ArtalignError, match="FID needs at least 2 .* got 1 generated"):
        get_metric("fid").fn(ctx, _samples(images[:1], ["a"]))
