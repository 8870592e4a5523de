"""Sampling speed: plain diffusers, our sampler, and our sampler with DDPO's log-probs.

    python benchmarks/sampling_speed.py [--model runs/demo/generator] [--n 64] [--repeats 3]

All rows sample the same prompts and seeds with DDIM, 20 steps, guidance 3, in one batch:
- diffusers: `StableDiffusionPipeline` (DDIMScheduler) on the same weights — the baseline;
- ours, η = 0: `Generator.sample` (the images equal the pipeline's; a test checks it);
- ours, η = 1: stochastic DDIM, no trajectory;
- ours, η = 1 + log-probs: `return_trajectory=True`, what DDPO samples (keeps every latent and
  each step's Gaussian log-prob). Target: <= 1.15x plain sampling.
Each row is the median of --repeats timed runs after one warm-up; ratios are against the
diffusers row and against ours at η = 1 (the same computation without the log-prob book-keeping).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_utils import REPO, median_seconds
from diffusers import DDIMScheduler, StableDiffusionPipeline

from base_models.generator import Generator

STEPS, GUIDANCE = 20, 3.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    prompts = [f"a {c} circle on a white background" for c in ("red", "blue", "green", "yellow")]
    prompts = (prompts * args.n)[: args.n]
    seeds = list(range(args.n))
    gen = Generator.from_folder(args.model)
    pipe = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def plain() -> None:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        with torch.no_grad():
            pipe(
                prompts,
                generator=gens,
                num_inference_steps=STEPS,
                guidance_scale=GUIDANCE,
                output_type="pt",
            )

    def ours(eta: float, traj: bool):
        return lambda: gen.sample(
            prompts,
            seeds,
            steps=STEPS,
            guidance=GUIDANCE,
            eta=eta,
            batch_size=args.n,
            return_trajectory=traj,
        )

    rows = [("diffusers StableDiffusionPipeline (baseline)", median_seconds(plain, args.repeats))]
    rows.append(("ours, eta 0", median_seconds(ours(0.0, False), args.repeats)))
    rows.append(("ours, eta 1", median_seconds(ours(1.0, False), args.repeats)))
    rows.append(("ours, eta 1 + log-probs (DDPO)", median_seconds(ours(1.0, True), args.repeats)))
    base, eta1 = rows[0][1], rows[2][1]
    print(
        f"\n{args.n} images, {STEPS} DDIM steps, guidance {GUIDANCE}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| sampler | s | images/s | vs diffusers | vs ours eta 1 |\n|---|---|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.2f} | {args.n / s:.1f} | {s / base:.2f}x | {s / eta1:.2f}x |")


if __name__ == "__main__":
    main()
