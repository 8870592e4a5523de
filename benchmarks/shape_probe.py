"""A fast probe of whether a UNet recipe learns shape: train briefly, let the oracle read it.

    python benchmarks/shape_probe.py --data runs/demo/data --vae runs/demo/vae \
        --clip runs/demo/clip --oracle runs/demo/oracle --out runs/probe/unet \
        [--preset quick] [KEY=VALUE ...]

Trains `artalign base train-unet` with the preset and the KEY=VALUE overrides (typically a
smaller max_steps, so that one idea costs 5–10 minutes on 2 cores), then samples the generator
evaluation's single-object prompts (default 200 prompts × 1 seed, 20 DDIM steps, guidance 3) and
prints the oracle's colour / shape / both accuracy next to the training time. The figures are
those of `artalign base eval-generator`'s "single" set, with fewer seeds: a probe ranks ideas,
the full evaluation measures the chosen one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base_models.config import load_config  # noqa: E402
from base_models.generator import Generator  # noqa: E402
from base_models.generator.evaluate import evaluate_generator, load_instruments  # noqa: E402
from base_models.unet import UNetConfig, train_unet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    p.add_argument("--vae", type=Path, default=Path("runs/demo/vae"))
    p.add_argument("--clip", type=Path, default=Path("runs/demo/clip"))
    p.add_argument("--oracle", type=Path, default=Path("runs/demo/oracle"))
    p.add_argument("--out", type=Path, required=True, help="a new folder for the probe's model")
    p.add_argument("--preset", default="quick")
    p.add_argument("--prompts", type=int, default=200, help="single-object prompts")
    p.add_argument("--seeds", type=int, default=1, help="images per prompt")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--eval-only", action="store_true", help="re-read an existing --out model")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the UNet config")
    a = p.parse_args()

    if a.eval_only:
        train = json.loads((a.out / "metrics.json").read_text())
        train_s = train["train_seconds"]
    else:
        cfg = load_config(UNetConfig, a.preset, overrides=a.overrides)
        t0 = time.perf_counter()
        train = train_unet(cfg, a.data, a.vae, a.clip, a.out)
        train_s = time.perf_counter() - t0
    oracle, _ = load_instruments(a.oracle, None)
    gen = Generator.from_folder(a.out)
    t1 = time.perf_counter()
    m = evaluate_generator(
        gen,
        oracle,
        None,
        n_prompts=a.prompts,
        seeds=a.seeds,
        n_two=0,
        n_heldout=0,
        guidance=a.guidance,
    )
    single = m["single"]
    row = {
        "overrides": a.overrides,
        "guidance": a.guidance,
        "steps": train["steps"],
        "batch_size": train["batch_size"],
        "unet_parameters": train["unet_parameters"],
        "train_seconds": round(train_s, 1),
        "eval_seconds": round(time.perf_counter() - t1, 1),
        **{k: single[k] for k in ("colour_acc", "shape_acc", "both_acc", "n_images")},
    }
    print(
        f"\n{'overrides':<40}{'steps':>6}{'params':>9}{'train s':>9}"
        f"{'colour':>8}{'shape':>7}{'both':>7}"
    )
    print(
        f"{' '.join(a.overrides) or '(preset)':<40}{row['steps']:>6}"
        f"{row['unet_parameters'] / 1e6:>8.2f}M{row['train_seconds']:>9.0f}"
        f"{row['colour_acc']:>8.3f}{row['shape_acc']:>7.3f}{row['both_acc']:>7.3f}"
    )
    (a.out / f"shape_probe_g{a.guidance:g}.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
