"""FID from 10k features: artalign vs torchmetrics used directly vs a float64 scipy reference.

    python benchmarks/fid_speed.py [--n 10000] [--dims 128 2048] [--repeats 1] [--out FILE.json]

The same synthetic features (correlated Gaussians, float32 as an extractor returns them; the
fake set shifted and rescaled) go to
- ours: `evaluation.quality.frechet_distance` (torchmetrics' float64 running sums, trace term
  from two symmetric eigendecompositions);
- torchmetrics: `FrechetInceptionDistance` with a pass-through extractor, update + compute
  (float64 states; `eigvals` of Σ_r Σ_f);
- scipy: `np.cov` and `scipy.linalg.sqrtm` in float64, the textbook reference (clean-fid and
  pytorch-fid compute it this way).
D = 128 is the embedded default's CLIP width, 2048 Inception's. Each time is the best of
`--repeats` runs after a warm-up call; the table gives seconds, ours / theirs, and
|ours − ref| / ref.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base_models.io_utils import write_json  # noqa: E402
from evaluation.quality import frechet_distance  # noqa: E402


def features(n: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim, dim, generator=g) / dim**0.5
    real = torch.randn(n, dim, generator=g) @ mix
    fake = 1.1 * torch.randn(n, dim, generator=g) @ mix + 0.05
    return real.float(), fake.float()


def torchmetrics_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    ident = torch.nn.Identity()
    ident.num_features = real.shape[1]
    metric = FrechetInceptionDistance(feature=ident)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def scipy_fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    r, f = real.double().numpy(), fake.double().numpy()
    mu1, mu2 = r.mean(0), f.mean(0)
    s1, s2 = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def run(n: int, dims: list[int], repeats: int) -> list[dict]:
    """Time the three on the same features; repeats interleave them in rotating order so that
    a change in the machine's load hits all three alike, and none always runs right after
    scipy (whose idle OpenBLAS threads keep spinning for a while and slow the next caller)."""
    rows = []
    for dim in dims:
        real, fake = features(n, dim)
        methods: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
            "ours": frechet_distance,
            "torchmetrics": torchmetrics_fid,
            "scipy": scipy_fid,
        }
        for fn in methods.values():  # warm up: lazy LAPACK / allocator initialisation
            fn(real[:64], fake[:64])
        times: dict[str, list[float]] = {name: [] for name in methods}
        values: dict[str, float] = {}
        names = list(methods)
        for rep in range(repeats):
            for name in names[rep % 3 :] + names[: rep % 3]:  # each follows each in turn
                fn = methods[name]
                time.sleep(1.0)  # let the last method's idle BLAS / OpenMP threads stop spinning
                t0 = time.perf_counter()
                values[name] = fn(real, fake)
                times[name].append(time.perf_counter() - t0)
        t = {name: min(ts) for name, ts in times.items()}
        ours, tm, sp = values["ours"], values["torchmetrics"], values["scipy"]
        rows.append(
            {
                "n": n,
                "dim": dim,
                "fid": ours,
                "seconds": t,
                "all_seconds": times,
                "ratio": {
                    "ours/torchmetrics": t["ours"] / t["torchmetrics"],
                    "ours/scipy": t["ours"] / t["scipy"],
                },
                "rel_diff": {
                    "vs_scipy": abs(ours - sp) / sp,
                    "vs_torchmetrics": abs(ours - tm) / tm,
                },
            }
        )
        print(f"D={dim}: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| N × D | ours (s) | torchmetrics (s) | scipy float64 (s) | ours / torchmetrics "
        "| ours / scipy | rel. diff vs scipy | rel. diff vs torchmetrics |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, q, d = r["seconds"], r["ratio"], r["rel_diff"]
        lines.append(
            f"| {r['n']} × {r['dim']} | {s['ours']:.2f} | {s['torchmetrics']:.2f} "
            f"| {s['scipy']:.2f} | {q['ours/torchmetrics']:.2f} | {q['ours/scipy']:.2f} "
            f"| {d['vs_scipy']:.1e} | {d['vs_torchmetrics']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="features per side")
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 2048])
    ap.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch and BLAS (1 gives steady timings on a shared "
        "machine, where idle OpenMP threads spin against other processes)",
    )
    args = ap.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits  # lazy: threadpoolctl

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    rows = run(args.n, args.dims, args.repeats)
    print(table(rows))
    if args.out is not None:
        env = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        }
        write_json(args.out, {"rows": rows, "env": env})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
