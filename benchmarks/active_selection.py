"""Active selection against random selection of labels: two reward-model learning curves, one run.

    python benchmarks/align_data.py --out runs/bench/align22      # once: the labelled pool
    python benchmarks/active_selection.py [--data runs/bench/align22] [--out runs/bench/active]
        [--fractions 0.1,0.2,0.3,0.45,0.6,0.8,1.0]

The training split's judgments are the pool (the labels exist already, so "asking" a rater is
revealing one); validation and test prompts are the same for every model. Random: the reward
model (`reward train --preset quick`) trains on a random share of the pool. Active: it starts
from the same random first share; each next share adds the judgments the previous model doubts
most (`rlhf.reward.priorities.select_uncertain`, what `artalign reward prioritise` writes into a
store for `order=uncertain`). Every model is evaluated on the test prompts (ties half credit).
Target: active reaches random's accuracy at 100% of the pool with <= 60% of the labels.
Prints both curves and writes OUT/metrics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from bench_utils import REPO

from base_models.config import load_config
from base_models.io_utils import write_json
from rlhf.reward.config import RewardConfig
from rlhf.reward.curve import parse_fractions
from rlhf.reward.data import PreferenceData, split_by_prompt
from rlhf.reward.evaluate import evaluate_reward
from rlhf.reward.loaders import load_from_store
from rlhf.reward.priorities import scorer_of, select_uncertain
from rlhf.reward.score import make_reward_fn
from rlhf.reward.train import train_reward


def point(cfg, data, held_out, run: Path, choose=None, fraction: float = 1.0) -> dict:
    """Train one model (on `choose(train)`, or a random `fraction`) and test it."""
    if run.exists():
        shutil.rmtree(run)
    train_reward(dataclasses.replace(cfg, train_fraction=fraction), data, run, choose=choose)
    m = evaluate_reward(run, data, run / "eval", clip_baseline=False, held_out=held_out)
    rm = m["scorers"]["reward_model"]
    trained = json.loads((run / "metrics.json").read_text())["data"]["train"]
    return {
        "n_train_judgments": trained["pairs"] + trained["rankings"],
        "accuracy": rm["accuracy"],
        "ci95": rm["ci95"],
        "n_test": rm["n"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO / "runs/bench/align22")
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/active")
    p.add_argument("--fractions", default="0.1,0.2,0.3,0.45,0.6,0.8,1.0")
    p.add_argument("--backbone", type=Path, default=REPO / "runs/demo/clip")
    a = p.parse_args()
    t0 = time.perf_counter()
    fractions = parse_fractions(a.fractions)
    cfg = load_config(RewardConfig, "quick", overrides={"backbone": str(a.backbone)})
    data = load_from_store(a.data / "labels.db")
    train, val, test = split_by_prompt(data, cfg.val_frac, cfg.test_frac, cfg.seed)
    pool_size = len(train)
    curves: dict[str, list[dict]] = {"random": [], "active": []}
    chosen: PreferenceData | None = None
    previous: Path | None = None  # the active curve's last model
    for f in fractions:
        row = point(cfg, data, (val, test), a.out / "random" / f"{f:g}", fraction=f)
        curves["random"].append({"fraction": f, **row})
        run = a.out / "active" / f"{f:g}"
        target = max(1, round(f * pool_size))
        if chosen is None or previous is None:
            chosen = train.sample(f, cfg.seed)  # the same first share as random's
        else:
            score = scorer_of(make_reward_fn(previous, device="cpu"))
            chosen = select_uncertain(train, chosen, target - len(chosen), score)
        picked = chosen
        row = point(cfg, data, (val, test), run, choose=lambda _train, c=picked: c)
        curves["active"].append({"fraction": f, **row})
        previous = run
        r, s = curves["random"][-1], curves["active"][-1]
        print(
            f"{f:>5.0%} of {pool_size} judgments: random {r['accuracy']:.3f}  "
            f"active {s['accuracy']:.3f}",
            flush=True,
        )
    full = curves["random"][-1]["accuracy"]
    reached = [c["fraction"] for c in curves["active"] if c["accuracy"] >= full]
    metrics = {
        "curves": curves,
        "pool_judgments": pool_size,
        "random_full_accuracy": full,
        "active_fraction_to_match": min(reached) if reached else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(a.out / "metrics.json", metrics)
    print(
        f"active matches random's full-pool accuracy {full:.3f} at "
        f"{metrics['active_fraction_to_match']} of the labels (target <= 0.6)"
    )


if __name__ == "__main__":
    main()
