"""Reward-model benchmark (issue 5): accuracy against the ceiling and the baselines, a taste that
is not in the prompt, and scoring throughput.

    python benchmarks/reward_accuracy.py --clip runs/demo/clip --oracle runs/demo/oracle \
        --out runs/bench/reward

(a) known noise: simulated raters (benchmarks/raters/known_noise.yaml: Bradley-Terry /
    Plackett-Luce temperature 0.1, ties within 0.05 called 30% of the time, no spammers) who
    value prompt fidelity plus large objects and light backgrounds, <= 5,000 judgments (k=4
    rankings; a small batch judged twice, for the two-rater ceiling) on procedural images with
    one attribute wrong at --mistake-rate. Target: held-out accuracy >= 95% of the analytic
    no-ties ceiling (`base_models.rater_ceiling`) and well above the zero-shot CLIP score.
(b) a taste not in the prompt: configs/raters/striped_lover.yaml (striped +0.5, flat -0.1; one
    of six raters a spammer) judging prompts that never name a style; then held-out pairs that
    differ only in style (one scene drawn in two styles, new prompts). Target: accuracy on
    those pairs >= 90% of their ceiling.
(c) scoring throughput of the trained reward model against the bare CLIP image encoder.

Accuracy is measured twice: on the sampled labels (ties half credit, tau tuned on validation:
`artalign reward eval`), and as the expected accuracy under the profile's answer distribution,
which has no label-sampling noise. The main table compares the expected accuracy without
predicted ties with the no-ties ceiling (`base_models.rater_ceiling`: a perfect model that
never predicts a tie either), as a raw ratio and chance-corrected, (model - random) / (ceiling -
random): random scores alone earn about 0.6 of the ceiling, the corrected figure gives them 0.
A second table sets the accuracy at the tuned tau against the true upper bound (a perfect model
that may predict a tie).
Prints a table; writes OUT/metrics.json (and OUT/a, OUT/b: stores, models, eval metrics).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from base_models.config import load_config  # noqa: E402
from base_models.io_utils import write_json  # noqa: E402
from base_models.oracle.model import AttributeOracle  # noqa: E402
from base_models.rater_ceiling import perfect_credit  # noqa: E402
from base_models.raters import load_profile  # noqa: E402
from benchmarks.reward_data import (  # noqa: E402
    BatchSpec,
    add_style_pairs,
    image_settings,
    open_prompts,
    simulated_store,
)
from benchmarks.reward_throughput import sample_images, throughput  # noqa: E402
from rlhf.reward.baselines import expected_credit  # noqa: E402
from rlhf.reward.config import RewardConfig  # noqa: E402
from rlhf.reward.evaluate import (  # noqa: E402
    PairTable,
    ScoreCache,
    SimulatedRaters,
    answer_table,
    evaluate_reward,
    held_out_splits,
    load_split,
)
from rlhf.reward.loaders import load_from_store  # noqa: E402
from rlhf.reward.model import load_reward_model, read_reward_config  # noqa: E402
from rlhf.reward.train import train_reward  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRAIN = {"head": "mlp", "mode": "frozen", "loss": "pl"}  # on the quick preset; see the report


def train_and_eval(db: Path, out: Path, sim: Any, args: Any, batch: str | None = None) -> dict:
    """Train on the store (optionally one batch), evaluate on its held-out prompts."""
    data = load_from_store(db, batch=batch)  # every rater: training fits the flags on its prompts
    cfg = load_config(
        RewardConfig, "quick", overrides={**TRAIN, "backbone": str(args.clip), "seed": args.seed}
    )
    t0 = time.perf_counter()
    train_reward(cfg, data, out / "model", log=print)
    seconds = time.perf_counter() - t0
    metrics = evaluate_reward(out / "model", data, out / "eval", sim=sim, log=print)
    metrics["train_seconds"] = seconds
    return metrics


def mistake_breakdown(db: Path, metrics_dir: Path, sim: Any) -> dict[str, Any]:
    """Expected accuracy of the model and the ceiling per kind of mistake in a test pair."""
    left_out = read_reward_config(metrics_dir / "model")["data"].get("excluded_raters")
    data = load_from_store(db, exclude_raters=left_out)  # as `evaluate_reward` scores it
    _, test, _ = held_out_splits(data, load_split(metrics_dir / "model"))
    t = PairTable.of(test)
    q = answer_table(test, t, sim)
    model = load_reward_model(metrics_dir / "model")
    d = ScoreCache(test, lambda ims, ps: model.score(ims, ps)).diffs(t)
    settings = image_settings(db)
    model_credit = expected_credit(q[:, :3], d)
    ceiling = perfect_credit(q[:, :3], ties=False)  # the model never predicts a tie here

    def kind(i: int) -> str:
        m = settings.get(str(test.images[i]), {}).get("mistake")
        return "none" if m is None else "dropped" if m.startswith("dropped") else m.split(" of")[0]

    groups: dict[str, list[int]] = {}
    for n, (a, b) in enumerate(zip(t.a, t.b, strict=True)):
        wrong = [k for k in (kind(a), kind(b)) if k != "none"]
        key = "no mistake" if not wrong else wrong[0] if len(wrong) == 1 else "both"
        groups.setdefault(key, []).append(n)
    return {
        k: {
            "n": len(ix),
            "model": float(model_credit[ix].mean()),
            "ceiling": float(ceiling[ix].mean()),
        }
        for k, ix in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    }


def part_a(args: Any, oracle: Any) -> dict[str, Any]:
    profile = load_profile(HERE / "raters" / "known_noise.yaml")
    n_overlap = args.judgments // 20  # tasks judged twice: the two-rater ceiling
    n_main = args.judgments - 2 * n_overlap
    prompts = open_prompts(n_main + n_overlap, seed=args.seed + 11, style_p=0.5)
    batches = [
        BatchSpec("a-main", prompts[:n_main], n_judgments=n_main, seed=1),
        BatchSpec("a-twice", prompts[n_main:], overlap=2, n_judgments=2 * n_overlap, seed=2),
    ]
    db, notes = simulated_store(args.out / "a", batches, profile, oracle, args.mistake_rate)
    sim = SimulatedRaters(profile, oracle)
    metrics = train_and_eval(db, args.out / "a", sim, args)
    metrics["store"] = notes
    metrics["by_mistake"] = mistake_breakdown(db, args.out / "a", sim)
    return metrics


def part_b(args: Any, oracle: Any) -> dict[str, Any]:
    profile = load_profile(REPO / "configs" / "raters" / "striped_lover.yaml")
    n_tasks = args.judgments // 2  # judged twice, so the spammer can be flagged
    prompts = open_prompts(n_tasks + args.style_pairs, seed=args.seed + 23, style_p=0.0)
    batches = [BatchSpec("b-main", prompts[:n_tasks], overlap=2, n_judgments=2 * n_tasks, seed=3)]
    db, notes = simulated_store(args.out / "b", batches, profile, oracle, args.mistake_rate)
    notes["style_pairs"] = add_style_pairs(db, prompts[n_tasks:], profile, oracle, seed=args.seed)
    spammers = frozenset(notes["spammers"])
    held_out = train_and_eval(
        db, args.out / "b", SimulatedRaters(profile, oracle, spammers), args, batch="b-main"
    )
    # the style pairs: new prompts, every judgment kept (the spammer's too: its ceiling is 0.5)
    style = load_from_store(db, batch="style-pairs", exclude_raters=None)
    sim = SimulatedRaters(profile, oracle, spammers)
    style_metrics = evaluate_reward(
        args.out / "b" / "model",
        style,
        args.out / "b" / "style_eval",
        sim=sim,
        drop_excluded_raters=False,
        log=print,
    )
    return {"held_out": held_out, "style_pairs": style_metrics, "store": notes}


def _row(label: str, m: dict[str, Any], target: float | None) -> dict[str, Any]:
    """One line of the tables: the scorers' figures, the ceilings and `evaluate.ratios`."""
    s, c, ratio = m["scorers"], m["ceiling"], m["ratios"]
    return {
        "label": label,
        "target": target,
        "n": s["reward_model"]["n"],
        "no_ties": {k: v["expected_accuracy_no_ties"] for k, v in s.items()},
        "at_tau": {k: v["expected_accuracy"] for k, v in s.items()},
        "sampled": {k: v["accuracy"] for k, v in s.items()},
        "ci95": s["reward_model"]["ci95"],
        "ceiling": c["analytic"]["accuracy_no_ties"],
        "bound": c["analytic"]["accuracy"],
        "raters": c["raters"]["accuracy"],
        "ratio": ratio["expected_no_ties_vs_analytic_ceiling_no_ties"],
        "corrected": ratio["chance_corrected_expected_no_ties_vs_analytic_ceiling_no_ties"],
        "corrected_tau": ratio["chance_corrected_expected_vs_analytic_ceiling"],
    }


def _f(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def table(results: dict[str, Any]) -> str:
    rows = [
        _row("(a) known noise, held out", results["a"], 0.95),
        _row("(b) striped lover, held out", results["b"]["held_out"], None),
        _row("(b) style-only pairs", results["b"]["style_pairs"], 0.90),
    ]
    lines = [
        "expected accuracy without predicted ties under the raters' profile, against the "
        "no-ties ceiling;",
        "chance-corr. = (reward - random) / (ceiling - random):",
        f"{'':<30} {'reward':>7} {'CLIP':>7} {'random':>7} {'ceiling':>8} {'/ceil':>6} "
        f"{'chance-corr.':>12} {'/CLIP':>6} {'target':>7} {'n':>6}",
    ]
    for r in rows:
        e = r["no_ties"]
        target = "" if r["target"] is None else f">= {r['target']:.2f}"
        lines.append(
            f"{r['label']:<30} {e['reward_model']:>7.4f} {e['clip_score']:>7.4f} "
            f"{e['random']:>7.4f} {r['ceiling']:>8.4f} {_f(r['ratio']):>6} "
            f"{_f(r['corrected']):>12} {e['reward_model'] / e['clip_score']:>6.3f} "
            f"{target:>7} {r['n']:>6}"
        )
    lines.append(
        "expected accuracy at the tuned tau, against the upper bound (a perfect model "
        "that may predict a tie):"
    )
    for r in rows:
        e = r["at_tau"]
        lines.append(
            f"{r['label']:<30} reward {e['reward_model']:.4f}  random "
            f"{e['random']:.4f}  bound {r['bound']:.4f}  chance-corr. "
            f"{_f(r['corrected_tau'])}"
        )
    lines.append("sampled labels (ties half credit, tau tuned on val; 95% CI over prompts):")
    for r in rows:
        e = r["sampled"]
        ci = "n/a" if not r["ci95"] else f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
        lines.append(
            f"{r['label']:<30} reward {e['reward_model']:.4f} {ci}  CLIP "
            f"{e['clip_score']:.4f}  random {e['random']:.4f}  two-rater "
            f"{_f(r['raters'], '.4f')}"
        )
    t = results["c"]
    lines.append(
        f"(c) scoring throughput: reward model {t['reward_images_per_s']:.0f} images/s, "
        f"bare CLIP image encoder {t['clip_images_per_s']:.0f} images/s "
        f"(ratio {t['ratio']:.3f}; {t['n_images']} images, "
        f"batch {t['batch_size']})"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=Path("runs/demo/clip"), help="CLIP backbone")
    p.add_argument("--oracle", type=Path, default=Path("runs/demo/oracle"), help="oracle folder")
    p.add_argument("--out", type=Path, default=Path("runs/bench/reward"))
    p.add_argument("--judgments", type=int, default=5000, help="per part (a) and (b)")
    p.add_argument("--style-pairs", type=int, default=600, help="held-out style-only pairs")
    p.add_argument("--mistake-rate", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    t0 = time.perf_counter()
    oracle = AttributeOracle.load(args.oracle)
    results: dict[str, Any] = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "training": TRAIN,
    }
    results["a"] = part_a(args, oracle)
    results["b"] = part_b(args, oracle)
    style = results["b"]["style_pairs"]
    images, prompts = sample_images(args.out / "b" / "labels.db", "b-main")
    results["c"] = throughput(args.out / "b" / "model", args.clip, images, prompts)
    results["seconds"] = time.perf_counter() - t0
    write_json(args.out / "metrics.json", results)
    print(table(results))
    print("(a) by mistake in the pair (expected accuracy: model / ceiling, n):")
    for k, v in results["a"]["by_mistake"].items():
        print(f"    {k:<12} {v['model']:.3f} / {v['ceiling']:.3f}  n={v['n']}")
    print(
        f"metrics: {args.out / 'metrics.json'}  ({results['seconds']:.0f}s; n style pairs "
        f"{style['scorers']['reward_model']['n']})"
    )


if __name__ == "__main__":
    main()
