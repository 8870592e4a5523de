"""Does DDPO move a policy? Rewards that need no shapes, so the trainer is measured on its own.

    python benchmarks/ddpo_trainer.py --reward compressibility [--minutes 15] [KEY=VALUE ...]
    python benchmarks/ddpo_trainer.py --reward oracle_fidelity [--minutes 15] [KEY=VALUE ...]
    python benchmarks/ddpo_trainer.py --reward incompressibility ...   # the control

1. Prompts (once, kept in --prompts-dir): 200 training prompts of the world (1-2 objects,
   `artalign data prompts --seed 31`) and 50 held-out prompts (seed 32, minus training ones).
2. `artalign align ddpo --preset quick` with the reward, for at most --minutes of training wall
   time (sampling and PPO both count), plus any KEY=VALUE overrides (the levers of the table in
   the README). oracle_fidelity optimises an evaluation instrument: research only, labelled so.
3. Held-out evaluation: the held-out prompts x 4 fresh seeds, base (adapters off) and aligned with
   the same seeds and the run's own sampler (its steps, guidance and eta: the policy trained).
   - the reward of base and aligned images: the mean gain in base standard deviations, 95% CI
     over prompts — target (compressibility) >= 1.0;
   - oracle fidelity base -> aligned — target (oracle_fidelity) >= +3 points;
   - FID drift, aligned vs base, against 1,000 real images in CLIP image features — <= 15%;
   - the run's per-epoch reward, clipfrac and approx-KL (from its metrics.json).
Prints a table; writes OUT/metrics.json and OUT/grid.png (base row above aligned row).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import yaml
from align_eval import (
    before_after_grid,
    fid_drift,
    oracle_fidelity,
    paired_gain,
    paired_samples,
    read_lines,
)
from bench_utils import REPO, artalign

from base_models.oracle import AttributeOracle
from rlhf.align.rewards import make_reward

SEEDS_PER_PROMPT = 4
# incompressibility is the control: the same trainer must move the same figure the other way
TARGETS = {
    "compressibility": ("reward gain", 1.0),
    "oracle_fidelity": ("fidelity points", 3.0),
    "incompressibility": ("reward gain", None),
}


def make_prompts(folder: Path) -> tuple[Path, Path]:
    """Training and held-out prompt files (made once; delete the folder to remake them)."""
    train, heldout = folder / "prompts.txt", folder / "heldout.txt"
    if train.is_file() and heldout.is_file():
        return train, heldout
    folder.mkdir(parents=True, exist_ok=True)
    artalign(
        "data", "prompts", "--out", str(train), "--n", "200", "--seed", "31", "--objects", "1-2"
    )
    candidates = folder / ".candidates.txt"
    artalign(
        "data",
        "prompts",
        "--out",
        str(candidates),
        "--n",
        "100",
        "--seed",
        "32",
        "--objects",
        "1-2",
    )
    seen = set(read_lines(train))
    fresh = [p for p in dict.fromkeys(read_lines(candidates)) if p not in seen][:50]
    candidates.unlink()
    heldout.write_text("\n".join(fresh) + "\n")
    return train, heldout


def evaluate(args: argparse.Namespace, run: Path, heldout: Path) -> dict:
    cfg = yaml.safe_load((run / "train_config.yaml").read_text())
    sampler = {"steps": cfg["steps"], "guidance": cfg["guidance"], "eta": cfg["eta"]}
    flat, base, aligned = paired_samples(
        args.model, run / "lora", read_lines(heldout), SEEDS_PER_PROMPT, **sampler
    )
    reward_fn = make_reward(args.reward, oracle=str(args.oracle))
    pixels = {"base": base, "aligned": aligned}
    rewards = {n: reward_fn(px, flat, None)[0].numpy() for n, px in pixels.items()}
    oracle = AttributeOracle.load(args.oracle)
    fidelity = {n: oracle_fidelity(oracle, px, flat) for n, px in pixels.items()}
    before_after_grid(base, aligned, SEEDS_PER_PROMPT, args.out / "grid.png")
    fid = paired_gain(fidelity["base"], fidelity["aligned"], flat)
    fid["points"] = 100 * (fid["aligned"] - fid["base"])
    return {
        "reward": paired_gain(rewards["base"], rewards["aligned"], flat),
        "fidelity": fid,
        "fid": fid_drift(args.clip, args.reference, base, aligned),
        "images": len(flat),
        "prompts": len(set(flat)),
        "sampler": sampler,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reward", choices=sorted(TARGETS), default="compressibility")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=None, help="default runs/bench/ddpo_REWARD")
    p.add_argument("--prompts-dir", type=Path, default=REPO / "runs/bench/ddpo_prompts")
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--clip", type=Path, default=REPO / "runs/demo/clip")
    p.add_argument("--reference", type=Path, default=REPO / "runs/demo/data")
    p.add_argument("--eval-only", action="store_true", help="Evaluate an existing OUT/run.")
    p.add_argument("overrides", nargs="*", help="Extra DDPO config KEY=VALUE.")
    args = p.parse_args()
    args.out = args.out or REPO / f"runs/bench/ddpo_{args.reward}"
    train, heldout = make_prompts(args.prompts_dir)
    run = args.out / "run"
    if not args.eval_only:
        if run.exists():
            shutil.rmtree(run)
        args.out.mkdir(parents=True, exist_ok=True)
        artalign(
            "align",
            "ddpo",
            "--model",
            str(args.model),
            "--prompts",
            str(train),
            "--reward",
            args.reward,
            f"reward_oracle={args.oracle}",
            "--out",
            str(run),
            "--preset",
            "quick",
            "epochs=100000",
            f"time_limit_min={args.minutes}",
            *args.overrides,
        )
    ddpo = json.loads((run / "metrics.json").read_text())
    t0 = time.perf_counter()
    result = evaluate(args, run, heldout)
    curve = ddpo.get("per_epoch", [])
    result.update(
        {
            "reward_name": args.reward,
            "research_reward": ddpo["research_reward"],
            "overrides": args.overrides,
            "minutes_limit": args.minutes,
            "epochs_run": ddpo["epochs_run"],
            "train_minutes": ddpo["train_seconds_this_session"] / 60,
            "per_epoch": curve,
            "eval_seconds": time.perf_counter() - t0,
        }
    )
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    r, f, d = result["reward"], result["fidelity"], result["fid"]
    late = curve[-5:] or [{}]
    mean = lambda key: sum(c.get(key, 0.0) for c in late) / len(late)  # noqa: E731
    rows = [
        (f"held-out {args.reward} base -> aligned", f"{r['base']:.3f} -> {r['aligned']:.3f}"),
        (
            "reward gain in base std [95% CI]",
            f"{r['gain_std']:+.2f} [{r['gain_std_ci'][0]:+.2f}, {r['gain_std_ci'][1]:+.2f}]",
        ),
        (
            "oracle fidelity base -> aligned",
            f"{f['base']:.3f} -> {f['aligned']:.3f} ({f['points']:+.1f} points)",
        ),
        (
            "FID drift (CLIP features, vs real)",
            f"{100 * d['drift']:+.1f}% ({d['base']:.1f} -> {d['aligned']:.1f})",
        ),
        ("epochs / training minutes", f"{result['epochs_run']} / {result['train_minutes']:.1f}"),
        (
            "last 5 epochs: clipfrac / clipfrac_max / approx_kl",
            f"{mean('clipfrac'):.3f} / {mean('clipfrac_max'):.3f} / {mean('approx_kl'):.2e}",
        ),
    ]
    print(f"\noverrides: {' '.join(args.overrides) or '(none)'}\n| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
