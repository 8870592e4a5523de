"""Diffusion-DPO benchmark (issue 6): held-out win-rate of the aligned generator over the base.

    python benchmarks/dpo_winrate.py [--data runs/bench/align] [--out runs/bench/dpo] \
        [--preset quick] [KEY=VALUE ...]

Trains `artalign align dpo` (the quick preset, plus overrides) on the shared benchmark store
(benchmarks/align_data.py: generated images of the demo generator judged by simulated raters of
configs/raters/default.yaml, <= 5,000 judgments), then samples base (adapters off) and aligned
on the held-out prompts (DATA/heldout.txt, never labelled) with the same seeds: DDIM eta 0,
20 steps, guidance 3, 4 seeds per prompt. A simulated rater with the default profile's taste
and a new seed ("same taste, new noise") compares each aligned image with the base image of the
same prompt and seed: the expected share of wins, ties half (evaluation.preference
.rater_winrate), with a bootstrap 95% CI over prompts (all seeds of a prompt together). Also:
the oracle's mean prompt fidelity of base and aligned, the held-out implicit accuracy and the
training wall time.
Target: win-rate >= 60%. Writes OUT/metrics.json (and OUT/run: the DPO run, OUT/samples.png).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base_models.config import load_config  # noqa: E402
from base_models.generator import Generator, SampleOutput  # noqa: E402
from base_models.imaging import make_grid  # noqa: E402
from base_models.io_utils import atomic_path, write_json  # noqa: E402
from base_models.oracle import AttributeOracle  # noqa: E402
from base_models.oracle.fidelity import fidelity, parse_prompt  # noqa: E402
from base_models.oracle.reading import read_images  # noqa: E402
from base_models.raters import load_profile  # noqa: E402
from evaluation.preference import rater_winrate  # noqa: E402
from evaluation.stats import mean_figure  # noqa: E402
from rlhf.align.dpo import train_dpo  # noqa: E402
from rlhf.align.dpo_config import DPOConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEEDS, STEPS, GUIDANCE = 4, 20, 3.0
RATER_SEED = 1000  # same taste as the labelling raters, new noise


def sample_pair(generator, prompts: list[str]) -> tuple:
    """Base and aligned images (N, 3, H, W) of every prompt x seed, same seeds for both."""
    texts = [p for p in prompts for _ in range(SEEDS)]
    seeds = [10_000 + i for i in range(len(texts))]
    kw = {"steps": STEPS, "guidance": GUIDANCE, "eta": 0.0, "batch_size": 50}
    with generator.lora_disabled():
        base = generator.sample(texts, seeds, **kw).pixels
    aligned = generator.sample(texts, seeds, **kw).pixels
    return texts, base, aligned


def fidelities(oracle, pixels, prompts: list[str]) -> np.ndarray:
    readings = read_images(oracle, pixels)
    pairs = zip(readings, prompts, strict=True)
    return np.array([fidelity(r, parse_prompt(p))[0] for r, p in pairs])


def _fig(f) -> str:
    return f"{f.value:.3f}  [{f.ci[0]:.3f}, {f.ci[1]:.3f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO / "runs/bench/align")
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/dpo")
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--profile", type=Path, default=REPO / "configs/raters/default.yaml")
    p.add_argument("--preset", default="quick")
    p.add_argument("overrides", nargs="*", help="DPOConfig overrides, KEY=VALUE")
    args = p.parse_args()

    db, heldout_file = args.data / "labels.db", args.data / "heldout.txt"
    if not db.is_file() or not heldout_file.is_file():
        sys.exit(f"{args.data} lacks labels.db / heldout.txt; run benchmarks/align_data.py first")
    cfg = load_config(DPOConfig, args.preset, overrides=args.overrides)
    cfg.model, cfg.pairs = str(args.model), str(db)
    run = args.out / "run"
    if run.exists():
        shutil.rmtree(run)
    t0 = time.perf_counter()
    train = train_dpo(cfg, run, log=print)
    wall = time.perf_counter() - t0

    generator = Generator.from_folder(args.model)
    generator.attach_lora(run / "lora")
    prompts = [line for line in heldout_file.read_text().splitlines() if line.strip()]
    t1 = time.perf_counter()
    texts, base, aligned = sample_pair(generator, prompts)
    sample_seconds = time.perf_counter() - t1
    oracle = AttributeOracle.load(args.oracle)
    profile = dataclasses.replace(load_profile(args.profile), seed=RATER_SEED)
    win = rater_winrate(oracle, profile, aligned, base, texts, seed=RATER_SEED)
    f_base, f_aligned = fidelities(oracle, base, texts), fidelities(oracle, aligned, texts)
    fig_base = mean_figure(f_base, groups=texts)
    fig_aligned = mean_figure(f_aligned, groups=texts)
    delta = mean_figure(f_aligned - f_base, groups=texts)

    # samples.png: the first seed of the first 8 prompts, base row over aligned row
    pick = slice(0, 8 * SEEDS, SEEDS)
    show = [SampleOutput(x[pick], texts[pick], []).images for x in (base, aligned)]
    with atomic_path(args.out / "samples.png") as tmp:
        make_grid(show[0] + show[1], ncols=len(show[0]), scale=3).save(tmp, format="PNG")

    metrics = {
        "winrate": win.to_dict(),
        "target_winrate": 0.6,
        "met": win.value >= 0.6,
        "fidelity_base": fig_base.to_dict(),
        "fidelity_aligned": fig_aligned.to_dict(),
        "fidelity_delta": delta.to_dict(),
        "heldout_prompts": len(prompts),
        "seeds_per_prompt": SEEDS,
        "images_per_model": len(texts),
        "sampling": {"steps": STEPS, "guidance": GUIDANCE, "eta": 0.0},
        "rater": {"profile": str(args.profile), "seed": RATER_SEED},
        "train_wall_seconds": round(wall, 1),
        "train_seconds": train["train_seconds"],
        "sample_seconds": round(sample_seconds, 1),
        "heldout_implicit_acc": train.get("heldout_implicit_acc"),
        "final_implicit_acc": train.get("final_implicit_acc"),
        "data": train["data"],
        "config": cfg.to_dict(),
        "command": " ".join(["python benchmarks/dpo_winrate.py", *sys.argv[1:]]),
    }
    write_json(args.out / "metrics.json", metrics)
    lo, hi = win.ci
    d = train["data"]
    rows = [
        (
            "held-out win-rate, aligned over base",
            f"{win.value:.3f}  [{lo:.3f}, {hi:.3f}]  (n={win.n})",
        ),
        ("target", ">= 0.600  " + ("met" if win.value >= 0.6 else "NOT met")),
        ("oracle fidelity, base", _fig(fig_base)),
        ("oracle fidelity, aligned", _fig(fig_aligned)),
        ("fidelity, aligned - base (paired)", _fig(delta)),
        ("held-out implicit accuracy", f"{train.get('heldout_implicit_acc', float('nan')):.3f}"),
        ("training pairs", f"{d['train_items']} ({d['train_prompts']} prompts)"),
        (
            "training wall time",
            f"{wall:.0f} s ({cfg.max_steps} steps, beta {cfg.beta:g}, lr {cfg.lr:g})",
        ),
    ]
    print("\nDiffusion-DPO benchmark  (" + str(args.out) + ")")
    for name, value in rows:
        print(f"  {name:<40} {value}")


if __name__ == "__main__":
    main()
