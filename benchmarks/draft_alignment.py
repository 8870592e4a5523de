"""DRaFT (reward backpropagation) against DDPO on the same learned reward (issue 21's targets).

    python benchmarks/align_data.py          # once: prompts, labelled batch, held-out prompts
    python benchmarks/ddpo_alignment.py      # the reward model and DDPO's run (runs/bench/ddpo)
    python benchmarks/draft_alignment.py [--minutes 15] [--out runs/bench/draft] [KEY=VALUE ...]

1. Reward per image seen. DDPO's run saw N images. DRaFT (`align draft`, quick preset, the same
   reward model, prompts and guard) trains on N/5 images (whole epochs); then the reward model
   scores base, DDPO's final adapters and DRaFT's at N/5 on the held-out prompts x 4 seeds, all
   drawn with one sampler (DDIM η = 0, 20 steps, guidance 3). Target: DRaFT at N/5 >= DDPO.
2. The same run, resumed, trains on until --minutes of training in all (sampling, backprop and
   the guard's checks count). Then DDPO's evaluation (benchmarks/ddpo_alignment.py): held-out
   simulated-rater win-rate over base, oracle fidelity, FID drift, the reward model's win-rate
   and the proxy gap (reward-model win-rate - rater win-rate), with the guard's verdicts.
Prints a table; writes OUT/metrics.json, OUT/grid.png and OUT/curves.json (reward per image seen
of both trainers' training logs).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import yaml
from bench_utils import REPO, artalign
from ddpo_alignment import EVAL_SEED0, SEEDS_PER_PROMPT, evaluate, guard_checks, sample

from base_models.generator import Generator
from evaluation.stats import bootstrap_ci
from rlhf.align.guard import read_prompts
from rlhf.reward.score import make_reward_fn


def heldout_rewards(args: argparse.Namespace, loras: dict[str, Path | None]) -> dict:
    """Mean reward-model score (with a CI over prompts) of each model on the held-out prompts."""
    prompts = read_prompts(args.data / "heldout.txt")
    flat = [p for p in prompts for _ in range(SEEDS_PER_PROMPT)]
    seeds = [EVAL_SEED0 + i for i in range(len(flat))]
    groups = np.repeat(np.arange(len(prompts)), SEEDS_PER_PROMPT)
    reward_fn = make_reward_fn(args.ddpo / "reward")
    out = {}
    for name, lora in loras.items():
        gen = Generator.from_folder(args.model)
        if lora is not None:
            gen.attach_lora(lora)
        rewards = reward_fn(sample(gen, flat, seeds), flat)[0].numpy()
        lo, hi = bootstrap_ci(rewards, groups=groups, seed=0)
        out[name] = {"mean": float(rewards.mean()), "ci": [float(lo), float(hi)]}
    return out


def curve(run: Path) -> list[tuple[int, float]]:
    """(images seen, training reward) per epoch of a DDPO or DRaFT run folder."""
    cfg = yaml.safe_load((run / "train_config.yaml").read_text())
    per_epoch = cfg["prompts_per_epoch"] * cfg["images_per_prompt"]
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [(r.get("images_seen", (r["epoch"] + 1) * per_epoch), r["reward_mean"]) for r in rows]


def draft(args: argparse.Namespace, run: Path, epochs: int, minutes: float, resume: bool) -> float:
    cmd = [
        "align",
        "draft",
        "--model",
        str(args.model),
        "--prompts",
        str(args.data / "prompts.txt"),
        "--reward-path",
        str(args.ddpo / "reward"),
        "--out",
        str(run),
        f"epochs={epochs}",
        f"time_limit_min={minutes}",
    ]
    if resume:
        return artalign(*cmd, "--resume")
    guard = [
        "guard_every=5",
        f"guard_prompts={args.data / 'heldout.txt'}",
        "guard_n_prompts=24",
        f"guard_oracle={args.oracle}",
        f"guard_clip={args.clip}",
        f"guard_rater={args.profile}",
        f"guard_reference={args.reference}",
    ]
    return artalign(*cmd, "--preset", "quick", *guard, *args.overrides)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO / "runs/bench/align")
    p.add_argument("--ddpo", type=Path, default=REPO / "runs/bench/ddpo")
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/draft")
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--clip", type=Path, default=REPO / "runs/demo/clip")
    p.add_argument("--reference", type=Path, default=REPO / "runs/demo/data")
    p.add_argument("--profile", type=Path, default=REPO / "configs/raters/default.yaml")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--fraction", type=float, default=0.2, help="Share of DDPO's images (1/5).")
    p.add_argument("overrides", nargs="*", help="Extra DRaFT config KEY=VALUE.")
    args = p.parse_args()
    ddpo_metrics = args.ddpo / "run" / "metrics.json"
    if not ddpo_metrics.is_file():
        raise SystemExit(f"{ddpo_metrics} is missing; run `python benchmarks/ddpo_alignment.py`")
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "run"
    if run.exists():
        shutil.rmtree(run)
    n_ddpo = curve(args.ddpo / "run")[-1][0]
    per_epoch = 16 * 2  # the quick preset's prompts_per_epoch x images_per_prompt
    fifth_epochs = max(1, math.ceil(args.fraction * n_ddpo / per_epoch))
    timing = {"draft_fifth_s": draft(args, run, fifth_epochs, args.minutes, resume=False)}
    shutil.copytree(run / "lora", args.out / "lora_fifth", dirs_exist_ok=True)
    used = json.loads((run / "metrics.json").read_text())["train_seconds_this_session"] / 60
    timing["draft_rest_s"] = draft(args, run, 100_000, max(0.1, args.minutes - used), True)
    t0 = time.perf_counter()
    rewards = heldout_rewards(
        args,
        {
            "base": None,
            "ddpo": args.ddpo / "run" / "lora",
            "draft_fifth": args.out / "lora_fifth",
            "draft": run / "lora",
        },
    )
    result = evaluate(args, run / "lora", args.ddpo / "reward", args.out)
    timing["eval_s"] = time.perf_counter() - t0
    draft_curve, ddpo_curve = curve(run), curve(args.ddpo / "run")
    (args.out / "curves.json").write_text(json.dumps({"draft": draft_curve, "ddpo": ddpo_curve}))
    metrics = json.loads((run / "metrics.json").read_text())
    result.update(
        {
            "heldout_reward": rewards,
            "ddpo_images": n_ddpo,
            "draft_images_fifth": fifth_epochs * per_epoch,
            "draft_images": draft_curve[-1][0],
            "draft": {k: v for k, v in metrics.items() if k != "guard"},
            "guard_checks": guard_checks(metrics.get("guard") or []),
            "guard": [g for g in metrics["guard"]],
            "timing": timing,
            "minutes_limit": args.minutes,
            "machine": "see README (2-core CPU)",
        }
    )
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    r = rewards
    w = result["rater_winrate"]
    wall_min = (timing["draft_fifth_s"] + timing["draft_rest_s"]) / 60
    verdicts = [("stop" if g["stop"] else "ok") for g in metrics["guard"]]
    rows = [
        (
            "held-out reward: base / DDPO (all images)",
            f"{r['base']['mean']:.3f} / {r['ddpo']['mean']:.3f} ({n_ddpo} images)",
            "-",
        ),
        (
            "held-out reward: DRaFT at 1/5 of DDPO's images",
            f"{r['draft_fifth']['mean']:.3f} [{r['draft_fifth']['ci'][0]:.3f}, "
            f"{r['draft_fifth']['ci'][1]:.3f}] ({fifth_epochs * per_epoch} images)",
            f">= DDPO's {r['ddpo']['mean']:.3f}",
        ),
        (
            "held-out reward: DRaFT after the whole run",
            f"{r['draft']['mean']:.3f} ({draft_curve[-1][0]} images)",
            "-",
        ),
        (
            "held-out rater win-rate, DRaFT over base",
            f"{w['value']:.3f} [{w['ci'][0]:.3f}, {w['ci'][1]:.3f}]",
            ">= 0.70",
        ),
        (
            "reward-model win-rate / proxy gap",
            f"{result['reward_winrate']['value']:.3f} / {result['proxy_gap']:+.3f}",
            "-",
        ),
        (
            "oracle fidelity base -> DRaFT",
            f"{result['fidelity']['base']:.3f} -> {result['fidelity']['aligned']:.3f} "
            f"({result['fidelity_points']:+.1f} points)",
            ">= +10 points",
        ),
        ("FID drift (CLIP features, vs real)", f"{100 * result['fid_drift']:+.1f}%", "<= 15%"),
        ("guard verdicts", " ".join(verdicts) or "-", "-"),
        (
            "DRaFT epochs / training wall time",
            f"{metrics['epochs_run']} / {wall_min:.1f} min (wall, with start-up)",
            f"<= {args.minutes:g} min",
        ),
    ]
    print("\n| figure | value | target |\n|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


if __name__ == "__main__":
    main()
