"""The shared alignment benchmark data set (issue 6): generated images judged by simulated raters.

    python benchmarks/align_data.py [--out runs/bench/align] [--model runs/demo/generator]

Runs the documented commands, so the data set is what a user of the CLI would make:
    artalign data prompts --n 300 --seed 21 --objects 1-2 --out OUT/prompts.txt
    artalign label batch --db OUT/labels.db --prompts OUT/prompts.txt --model MODEL \
        --k 4 --kinds pair,rank --overlap 1 --steps 20 --guidance 3 --batch-name align
    artalign label simulate --db OUT/labels.db --profile configs/raters/default.yaml \
        --oracle ORACLE --n 5000
300 prompts x 4 images give 6 pairs and one 4-way ranking per prompt: 2,100 tasks, each judged
once (<= 5,000 judgments; 3,600 implied pairs). Held-out prompts for evaluation (DPO's win-rate,
DDPO's guard) are drawn from the same world with another seed, minus any training prompt, and
written to OUT/heldout.txt (50 prompts). `--open-traits` draws prompts that leave size and
background open instead (for a taste the prompts never name, with a profile of that taste).

The folder is built beside OUT and renamed in when complete; an existing OUT is kept (delete it
to rebuild). The DPO and DDPO benchmarks both read it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from bench_utils import REPO, artalign
from reward_data import open_prompts

from rlhf.reward.loaders import load_from_store

N_TRAIN, TRAIN_SEED = 300, 21
N_HELDOUT, HELDOUT_SEED = 50, 22
MAX_JUDGMENTS = 5000


def world_prompts(path: Path, n: int, seed: int, open_traits: bool) -> None:
    """`n` prompts into `path`: the world's captions, or (`open_traits`) prompts that leave size
    and background to the image (`reward_data.open_prompts`: colour, shape, half the time the
    position and the style), so a taste for either is a taste the prompts never name."""
    if open_traits:
        path.write_text("\n".join(open_prompts(n, seed)) + "\n")
        return
    artalign(
        "data",
        "prompts",
        "--out",
        str(path),
        "--n",
        str(n),
        "--seed",
        str(seed),
        "--objects",
        "1-2",
    )


def build(out: Path, model: Path, oracle: Path, profile: Path, open_traits: bool = False) -> dict:
    """Make prompts, the labelled batch and the held-out prompts in `out` (a fresh folder)."""
    t0 = time.perf_counter()
    prompts = out / "prompts.txt"
    world_prompts(prompts, N_TRAIN, TRAIN_SEED, open_traits)
    db = out / "labels.db"
    artalign(
        "label",
        "batch",
        "--db",
        str(db),
        "--prompts",
        str(prompts),
        "--model",
        str(model),
        "--k",
        "4",
        "--kinds",
        "pair,rank",
        "--overlap",
        "1",
        "--steps",
        "20",
        "--guidance",
        "3",
        "--batch-name",
        "align",
        "--batch-size",
        "32",
    )
    t1 = time.perf_counter()
    artalign(
        "label",
        "simulate",
        "--db",
        str(db),
        "--profile",
        str(profile),
        "--oracle",
        str(oracle),
        "--n",
        str(MAX_JUDGMENTS),
    )
    t2 = time.perf_counter()
    # held-out prompts: same world, another seed; drop any that is also a training prompt
    candidates = out / ".heldout_candidates.txt"
    world_prompts(candidates, 2 * N_HELDOUT, HELDOUT_SEED, open_traits)
    train = set(prompts.read_text().splitlines())
    fresh = dict.fromkeys(candidates.read_text().splitlines())
    heldout = [p for p in fresh if p and p not in train][:N_HELDOUT]
    candidates.unlink()
    (out / "heldout.txt").write_text("\n".join(heldout) + "\n")
    summary = load_from_store(db).summary()
    notes = {
        "model": str(model),
        "oracle": str(oracle),
        "profile": str(profile),
        "open_traits": open_traits,
        "train_prompts": N_TRAIN,
        "train_seed": TRAIN_SEED,
        "heldout_prompts": len(heldout),
        "heldout_seed": HELDOUT_SEED,
        "data": summary,
        "generate_seconds": round(t1 - t0, 1),
        "simulate_seconds": round(t2 - t1, 1),
    }
    (out / "data.json").write_text(json.dumps(notes, indent=2) + "\n")
    return notes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/align")
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--profile", type=Path, default=REPO / "configs/raters/default.yaml")
    p.add_argument(
        "--open-traits",
        action="store_true",
        help="Prompts that leave size and background open (for a taste the prompts never name).",
    )
    args = p.parse_args()
    if (args.out / "labels.db").is_file() and (args.out / "heldout.txt").is_file():
        print(f"{args.out} exists; delete it to rebuild")
        return
    tmp = args.out.with_name(f".{args.out.name}.building")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    notes = build(
        tmp, args.model.resolve(), args.oracle.resolve(), args.profile.resolve(), args.open_traits
    )
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    print(json.dumps(notes["data"]), f"-> {args.out}")


if __name__ == "__main__":
    main()
