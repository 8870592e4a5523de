"""Does Diffusion-DPO move a policy? A clean synthetic preference, so the trainer is measured alone.

    python benchmarks/dpo_trainer.py [--minutes 15] [--out runs/bench/dpo_left] [KEY=VALUE ...]

1. Data (once, kept in OUT/data): 200 one-object training prompts of the world (seed 41) with
   the position left open ("a large red circle on a white background, striped style": the
   world's caption minus its "in the ..."), 4 images each from the base generator (`artalign
   label batch`, pair tasks, DDIM eta 0, 20 steps, guidance 3), every pair judged once by the
   simulated rater of benchmarks/raters/left_lover.yaml through `artalign label simulate`: the
   object further left wins (as the oracle reads its column), the same column is a tie.
   Why position and not, say, a light background: the base generator draws the background a
   prompt names, and gray for every prompt that names none (48 of 48 images), so backgrounds
   never differ within a prompt; an unstated position does (47% of a prompt's images are off
   its most common column), so there is something to prefer.
2. `artalign align dpo --preset quick` on that store for at most --minutes of training steps.
3. Held-out evaluation: 50 held-out prompts (seed 42, minus training ones, position open) x 4
   fresh seeds, base (adapters off) and aligned with the same seeds and the labelling sampler:
   - the share of images whose object the oracle reads in the left column, base -> aligned,
     with 95% CIs over prompts — target: + 20 points or more;
   - the raters' mean utility, and the oracle fidelity of what the prompt does state.
Prints a table; writes OUT/metrics.json and OUT/grid.png (base row above aligned row).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
from align_eval import before_after_grid, oracle_fidelity, paired_samples, read_lines
from bench_utils import REPO, artalign

from base_models.oracle import AttributeOracle
from base_models.oracle.reading import read_images
from base_models.raters import load_profile, taste
from evaluation.stats import mean_figure

SEEDS_PER_PROMPT = 4
SAMPLER = {"steps": 20, "guidance": 3.0, "eta": 0.0}
PROFILE = REPO / "benchmarks/raters/left_lover.yaml"
POSITION = re.compile(r" in the (?:center|(?:top|middle|bottom) (?:left|center|right))")


def open_position(prompt: str) -> str:
    """The world's caption without its position phrase: the generator picks the place."""
    return POSITION.sub("", prompt)


def world_prompts(out: Path, n: int, seed: int) -> list[str]:
    raw = out.with_suffix(".raw.txt")
    artalign(
        "data", "prompts", "--out", str(raw), "--n", str(n), "--seed", str(seed), "--objects", "1"
    )
    prompts = list(dict.fromkeys(open_position(p) for p in read_lines(raw)))
    raw.unlink()
    return prompts


def make_data(folder: Path, model: Path, oracle: Path) -> dict:
    """Prompts, the labelled store and held-out prompts in `folder` (built once, then kept)."""
    if (folder / "data.json").is_file():
        return json.loads((folder / "data.json").read_text())
    tmp = folder.with_name(f".{folder.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    train = world_prompts(tmp / "prompts.txt", 200, 41)
    (tmp / "prompts.txt").write_text("\n".join(train) + "\n")
    heldout = [p for p in world_prompts(tmp / "heldout.txt", 100, 42) if p not in set(train)]
    (tmp / "heldout.txt").write_text("\n".join(heldout[:50]) + "\n")
    db = tmp / "labels.db"
    artalign(
        "label",
        "batch",
        "--db",
        str(db),
        "--prompts",
        str(tmp / "prompts.txt"),
        "--model",
        str(model),
        "--k",
        "4",
        "--kinds",
        "pair",
        "--overlap",
        "1",
        "--steps",
        str(SAMPLER["steps"]),
        "--guidance",
        str(SAMPLER["guidance"]),
        "--batch-name",
        "left",
        "--batch-size",
        "64",
    )
    artalign(
        "label",
        "simulate",
        "--db",
        str(db),
        "--profile",
        str(PROFILE),
        "--oracle",
        str(oracle),
        "--n",
        "100000",
    )
    notes = {
        "train_prompts": len(train),
        "heldout_prompts": min(50, len(heldout)),
        "profile": str(PROFILE.relative_to(REPO)),
        "seconds": time.perf_counter() - t0,
    }
    (tmp / "data.json").write_text(json.dumps(notes, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return notes


def evaluate(args: argparse.Namespace, run: Path) -> dict:
    prompts = read_lines(args.out / "data" / "heldout.txt")
    flat, base, aligned = paired_samples(
        args.model, run / "lora", prompts, SEEDS_PER_PROMPT, **SAMPLER
    )
    oracle = AttributeOracle.load(args.oracle)
    profile = load_profile(PROFILE)
    result: dict = {"images": len(flat), "prompts": len(prompts)}
    for name, px in (("base", base), ("aligned", aligned)):
        readings = read_images(oracle, px)
        cols = [r.objects[0]["col"] if r.objects else None for r in readings]
        left = np.array([c == 0 for c in cols], dtype=np.float64)
        utility = np.array([taste(r, profile) for r in readings])
        result[name] = {
            "left_share": mean_figure(left, groups=flat).to_dict(),
            "utility": mean_figure(utility, groups=flat).to_dict(),
            "columns": {str(c): cols.count(c) / len(cols) for c in set(cols)},
            "fidelity": mean_figure(oracle_fidelity(oracle, px, flat), groups=flat).to_dict(),
        }
    result["left_points"] = 100 * (
        result["aligned"]["left_share"]["value"] - result["base"]["left_share"]["value"]
    )
    before_after_grid(base, aligned, SEEDS_PER_PROMPT, args.out / "grid.png")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/dpo_left")
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--eval-only", action="store_true", help="Evaluate an existing OUT/run.")
    p.add_argument("overrides", nargs="*", help="Extra DPO config KEY=VALUE.")
    args = p.parse_args()
    data = make_data(args.out / "data", args.model, args.oracle)
    run = args.out / "run"
    if not args.eval_only:
        shutil.rmtree(run, ignore_errors=True)
        artalign(
            "align",
            "dpo",
            "--model",
            str(args.model),
            "--db",
            str(args.out / "data" / "labels.db"),
            "--out",
            str(run),
            "--preset",
            "quick",
            "max_steps=1000000",
            f"time_limit_min={args.minutes}",
            *args.overrides,
        )
    dpo = json.loads((run / "metrics.json").read_text())
    result = evaluate(args, run)
    result.update(
        {
            "data": data,
            "overrides": args.overrides,
            "minutes_limit": args.minutes,
            "dpo": {
                k: dpo.get(k)
                for k in (
                    "steps",
                    "train_seconds",
                    "final_loss",
                    "final_implicit_acc",
                    "heldout_implicit_acc",
                    "stopped_by_time",
                )
            },
        }
    )
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    b, a = result["base"], result["aligned"]

    def fig(f: dict) -> str:
        return f"{f['value']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]"

    rows = [
        ("object in the left column, base", fig(b["left_share"])),
        ("object in the left column, aligned", fig(a["left_share"])),
        ("change (target >= +20 points)", f"{result['left_points']:+.1f} points"),
        (
            "rater utility base -> aligned",
            f"{b['utility']['value']:.3f} -> {a['utility']['value']:.3f}",
        ),
        (
            "oracle fidelity base -> aligned",
            f"{b['fidelity']['value']:.3f} -> {a['fidelity']['value']:.3f}",
        ),
        (
            "DPO steps / training minutes / held-out implicit acc",
            f"{dpo['steps']} / {dpo['train_seconds'] / 60:.1f} / "
            f"{dpo.get('heldout_implicit_acc') or float('nan'):.3f}",
        ),
    ]
    print(f"\noverrides: {' '.join(args.overrides) or '(none)'}\n| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
