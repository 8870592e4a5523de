"""DDPO against a reward model trained on simulated-rater labels (issue 6's main target).

    python benchmarks/align_data.py                  # once: prompts, labelled batch, held-out
    python benchmarks/ddpo_alignment.py [--minutes 15] [--out runs/bench/ddpo]

1. Trains the reward model on the shared alignment labels (runs/bench/align/labels.db, judged by
   the `default` simulated-rater profile) with `artalign reward train --preset quick`, unless
   OUT/reward exists.
2. Runs `artalign align ddpo` (quick preset) with that reward for at most --minutes of training
   wall time (sampling, PPO and the guard's checks all count), the guard watching held-out prompts.
3. Evaluates base vs aligned (the final adapters) on the held-out prompts with fresh seeds:
   - win-rate of aligned over base by a held-out simulated rater (same taste, new noise; the
     expected credit, ties half) — target >= 0.70;
   - oracle fidelity, base and aligned — target: + 10 points;
   - FID drift: (FID_aligned - FID_base) / FID_base, both against real images of the data set in
     the CLIP image tower's features — target <= 15%;
   - the reward model's own win-rate and the CLIP score, for context.
Prints a table and writes OUT/metrics.json and OUT/grid.png (base row above aligned row).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_utils import REPO, artalign

from base_models.clip.features import ClipImageFeatures
from base_models.generator import Generator
from base_models.generator.evaluate import clip_fid
from base_models.imaging import make_grid, to_pil
from base_models.oracle import AttributeOracle
from base_models.oracle.expected import legibility
from base_models.oracle.fidelity import fidelity as fidelity_fn
from base_models.oracle.fidelity import parse_prompt
from base_models.oracle.reading import read_images
from base_models.raters import both_illegible, load_profile
from evaluation.preference import (
    rater_pair_credits,
    rater_utilities,
    rater_winrate,
    read_records,
    reward_winrate,
    utilities_of,
)
from evaluation.stats import mean_figure
from rlhf.align.guard import load_reference, read_prompts
from rlhf.reward.baselines import clip_score_fn
from rlhf.reward.score import make_reward_fn

SEEDS_PER_PROMPT = 4
EVAL_SEED0 = 500_000  # evaluation seeds: disjoint from training and guard seeds
N_REFERENCE = 1000


def sample(gen, prompts: list[str], seeds: list[int]) -> torch.Tensor:
    return gen.sample(prompts, seeds, steps=20, guidance=3.0, batch_size=64).pixels


def shows(record: dict, key: str, value: str) -> bool:
    """Whether an oracle record shows `key` = `value` (background, style, or any object's)."""
    if key in ("background", "style"):
        return record[key] == value
    return any(o[key] == value for o in record["objects"])


def trait_figures(trait: str, oracle, rater, aligned, base, prompts: list[str]) -> dict:
    """For a trait KEY=VALUE: the share of images showing it, base and aligned, and the held-out
    rater's win-rate on the pairs where exactly one of the two images shows it."""
    key, _, value = trait.partition("=")
    if key not in ("background", "style", "shape", "colour", "size") or not value:
        sys.exit(
            f"--trait {trait!r}: use KEY=VALUE with KEY background, style, shape, colour, size"
        )
    rec_a, rec_b = read_records(oracle, aligned), read_records(oracle, base)
    has_a = np.array([shows(r, key, value) for r in rec_a])
    has_b = np.array([shows(r, key, value) for r in rec_b])
    differ = np.flatnonzero(has_a != has_b)
    out = {
        "trait": trait,
        "share": {"base": float(has_b.mean()), "aligned": float(has_a.mean())},
        "share_points": float(100 * (has_a.mean() - has_b.mean())),
        "n_differ": int(differ.size),
    }
    if differ.size:
        sub = [prompts[i] for i in differ]
        u_a = utilities_of([rec_a[i] for i in differ], sub, rater)
        u_b = utilities_of([rec_b[i] for i in differ], sub, rater)
        illegible = [
            both_illegible([legibility(rec_a[i]), legibility(rec_b[i])], rater) for i in differ
        ]
        credits = rater_pair_credits(u_a, u_b, rater, illegible)
        out["winrate_where_differ"] = mean_figure(credits, groups=sub).to_dict()
    return out


def evaluate(args: argparse.Namespace, lora: Path, reward_dir: Path, out: Path) -> dict:
    """Base vs `lora` on the held-out prompts (args: data, model, oracle, profile, clip,
    reference); writes out/grid.png. Shared with benchmarks/draft_alignment.py."""
    prompts = read_prompts(args.data / "heldout.txt")
    flat = [p for p in prompts for _ in range(SEEDS_PER_PROMPT)]
    seeds = [EVAL_SEED0 + i for i in range(len(flat))]
    gen = Generator.from_folder(args.model)
    base = sample(gen, flat, seeds)
    gen.attach_lora(lora)
    aligned = sample(gen, flat, seeds)
    oracle = AttributeOracle.load(args.oracle)
    profile = load_profile(args.profile)
    heldout_rater = dataclasses.replace(profile, seed=profile.seed + 1000)
    win = rater_winrate(oracle, heldout_rater, aligned, base, flat)
    fid_of = {}
    fidelity = {}
    for name, px in (("base", base), ("aligned", aligned)):
        readings = read_images(oracle, px)
        fidelity[name] = float(
            np.mean(
                [fidelity_fn(r, parse_prompt(p))[0] for r, p in zip(readings, flat, strict=True)]
            )
        )
    features = ClipImageFeatures.from_folder(args.clip)
    reference = load_reference(args.reference, N_REFERENCE, base.shape[-1])
    for name, px in (("base", base), ("aligned", aligned)):
        fid_of[name] = clip_fid(features, reference, px)
    reward_fn = make_reward_fn(reward_dir)
    rwin = reward_winrate(reward_fn, aligned, base, flat)
    clip = clip_score_fn(args.clip)
    grid_px = torch.cat(
        [
            base[: 8 * SEEDS_PER_PROMPT : SEEDS_PER_PROMPT],
            aligned[: 8 * SEEDS_PER_PROMPT : SEEDS_PER_PROMPT],
        ]
    )
    make_grid(to_pil(grid_px), ncols=8, scale=3).save(out / "grid.png")
    clip_scores = {
        n: float(clip(to_pil(px), flat).mean()) for n, px in (("base", base), ("aligned", aligned))
    }
    u_base = rater_utilities(oracle, heldout_rater, base, flat)
    u_al = rater_utilities(oracle, heldout_rater, aligned, flat)
    extra = {}
    if getattr(args, "trait", None):
        extra["trait"] = trait_figures(args.trait, oracle, heldout_rater, aligned, base, flat)
    return {
        **extra,
        "n_pairs": len(flat),
        "prompts": len(prompts),
        "rater_winrate": win.to_dict(),
        "reward_winrate": rwin.to_dict(),
        "fidelity": fidelity,
        "fidelity_points": 100 * (fidelity["aligned"] - fidelity["base"]),
        "fid": fid_of,
        "fid_drift": (fid_of["aligned"] - fid_of["base"]) / fid_of["base"],
        "clip_score": clip_scores,
        "rater_utility": {"base": float(u_base.mean()), "aligned": float(u_al.mean())},
        # reward backprop over-optimises faster; the gap between what the reward model and a
        # held-out rater prefer shows it
        "proxy_gap": rwin.value - win.value,
    }


def guard_checks(reports: list[dict]) -> list[dict]:
    """Per guard check: epoch, training reward, rater and reward win-rates, the proxy gap."""
    keys = ("rater_winrate", "reward_winrate", "proxy_gap", "fidelity", "fid_drift")
    return [
        {"epoch": r["step"], "train_reward": r["train_reward"]}
        | {k: r["metrics"][k] for k in keys if k in r["metrics"]}
        for r in reports
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO / "runs/bench/align")
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/ddpo")
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--clip", type=Path, default=REPO / "runs/demo/clip")
    p.add_argument("--reference", type=Path, default=REPO / "runs/demo/data")
    p.add_argument("--profile", type=Path, default=REPO / "configs/raters/default.yaml")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument(
        "--reward",
        default="reward_model",
        help="reward_model (the target's setting) or oracle_fidelity (research: shows what DDPO "
        "does with a reward that reads prompt fidelity exactly)",
    )
    p.add_argument("--eval-only", action="store_true", help="Evaluate an existing OUT/run.")
    p.add_argument(
        "--trait",
        default=None,
        help="KEY=VALUE the raters' taste asks for (e.g. background=beige): report its share, "
        "base and aligned, and the win-rate on pairs that differ in it.",
    )
    p.add_argument("overrides", nargs="*", help="Extra DDPO config KEY=VALUE.")
    args = p.parse_args()
    if not (args.data / "labels.db").is_file():
        sys.exit(f"{args.data}/labels.db is missing; run `python benchmarks/align_data.py` first")
    args.out.mkdir(parents=True, exist_ok=True)
    timing = {}
    if not (args.out / "reward" / "reward_config.json").is_file():
        timing["reward_train_s"] = artalign(
            "reward",
            "train",
            "--data",
            str(args.data / "labels.db"),
            "--out",
            str(args.out / "reward"),
            "--preset",
            "quick",
        )
    run = args.out / "run"
    if not args.eval_only:
        if run.exists():
            shutil.rmtree(run)
        timing["ddpo_s"] = artalign(
            "align",
            "ddpo",
            "--model",
            str(args.model),
            "--prompts",
            str(args.data / "prompts.txt"),
            "--reward",
            args.reward,
            "--reward-path",
            str(args.out / "reward"),
            f"reward_oracle={args.oracle}",
            "--out",
            str(run),
            "--preset",
            "quick",
            "epochs=1000",
            f"time_limit_min={args.minutes}",
            "guard_every=5",
            f"guard_prompts={args.data / 'heldout.txt'}",
            "guard_n_prompts=24",
            f"guard_oracle={args.oracle}",
            f"guard_clip={args.clip}",
            f"guard_rater={args.profile}",
            f"guard_reference={args.reference}",
            *args.overrides,
        )
    ddpo = json.loads((run / "metrics.json").read_text())
    t0 = time.perf_counter()
    result = evaluate(args, run / "lora", args.out / "reward", args.out)
    timing["eval_s"] = time.perf_counter() - t0
    result.update(
        {
            "ddpo": {k: v for k, v in ddpo.items() if k != "guard"},
            "guard_checks": guard_checks(ddpo.get("guard") or []),
            "timing": timing,
            "minutes_limit": args.minutes,
            "machine": "see README (2-core CPU)",
        }
    )
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    w = result["rater_winrate"]
    rows = [
        (
            "held-out rater win-rate, aligned over base",
            f"{w['value']:.3f} [{w['ci'][0]:.3f}, {w['ci'][1]:.3f}]",
            ">= 0.70",
        ),
        (
            "oracle fidelity base -> aligned",
            f"{result['fidelity']['base']:.3f} -> "
            f"{result['fidelity']['aligned']:.3f} ({result['fidelity_points']:+.1f} points)",
            ">= +10 points",
        ),
        (
            "FID drift (CLIP features, vs real)",
            f"{100 * result['fid_drift']:+.1f}% "
            f"({result['fid']['base']:.1f} -> {result['fid']['aligned']:.1f})",
            "<= 15%",
        ),
        ("reward-model win-rate", f"{result['reward_winrate']['value']:.3f}", "-"),
        (
            "DDPO epochs / training wall time",
            f"{ddpo['epochs_run']} / {ddpo['train_seconds_this_session'] / 60:.1f} min",
            f"<= {args.minutes:g} min",
        ),
    ]
    if "trait" in result:
        t = result["trait"]
        share = f"{t['share']['base']:.3f} -> {t['share']['aligned']:.3f}"
        rows.append((f"share showing {t['trait']}", share, "+15 points"))
        if "winrate_where_differ" in t:
            wd = t["winrate_where_differ"]
            value = (
                f"{wd['value']:.3f} [{wd['ci'][0]:.3f}, {wd['ci'][1]:.3f}] ({t['n_differ']} pairs)"
            )
            rows.append(("win-rate on pairs that differ in it", value, ">= 0.65"))
    print("\n| figure | value | target |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
