"""Learning curve: train on 10%...100% of the training judgments, evaluate each on one test set.

Every run uses the same prompt split (`split_by_prompt` with the config's seed on all the data)
and only subsamples the training judgments (`RewardConfig.train_fraction`); every model is
measured on that split's validation (tau) and test prompts, so the points differ only in how
many labels the model saw. The zero-shot CLIP score and random baselines do not
depend on the fraction: they are measured once, with the first run. Writes, in `out`:
    frac_<f>/          each run's model and its eval/metrics.json
    metrics.json       one row per fraction, the baselines and the ceilings
    learning_curve.png test accuracy (95% CI) against the share of labels, with the baselines
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, write_json
from rlhf.reward.config import RewardConfig
from rlhf.reward.data import PreferenceData, split_by_prompt
from rlhf.reward.evaluate import SimulatedRaters, evaluate_reward
from rlhf.reward.train import train_reward

DEFAULT_FRACTIONS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
Log = Callable[[str], None]


def parse_fractions(text: str) -> list[float]:
    """'0.1,0.25,1' -> [0.1, 0.25, 1.0], sorted; ArtalignError unless each is in (0, 1]."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ArtalignError(
            f"--fractions must be numbers separated by commas, got {text!r}"
        ) from None
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise ArtalignError(
            f"--fractions must each lie in (0, 1], e.g. 0.1,0.25,0.5,1; got {text!r}"
        )
    return sorted(set(values))


def _row(fraction: float, run: Path, m: dict[str, Any], train_metrics: dict[str, Any]) -> dict:
    rm = m["scorers"]["reward_model"]
    return {
        "fraction": fraction,
        "n_train_pairs": train_metrics["data"]["train"]["implied_pairs"],
        "n_train_judgments": train_metrics["data"]["train"]["pairs"]
        + train_metrics["data"]["train"]["rankings"],
        "accuracy": rm["accuracy"],
        "ci95": rm["ci95"],
        "n_test": rm["n"],
        "accuracy_no_ties": rm["accuracy_no_ties"],
        "expected_accuracy": rm.get("expected_accuracy"),
        "ece": rm["ece"],
        "val_accuracy": train_metrics["val_accuracy"],
        "best_epoch": train_metrics["best_epoch"],
        "train_seconds": train_metrics["seconds"],
        "model": str(run),
    }


def learning_curve(
    cfg: RewardConfig,
    data: PreferenceData,
    out: str | Path,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    sim: SimulatedRaters | None = None,
    n_boot: int = 1000,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train and evaluate one model per fraction of the training judgments; return the metrics."""
    import json

    log = log or (lambda _m: None)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    t0 = time.perf_counter()
    _, val, test = split_by_prompt(data, cfg.val_frac, cfg.test_frac, cfg.seed)  # as train_reward
    rows, baselines, ceiling = [], {}, {}
    for n, fraction in enumerate(sorted(fractions)):
        run = out / f"frac_{fraction:g}"
        log(f"-- training on {fraction:.0%} of the training judgments -> {run}")
        train_reward(dataclasses.replace(cfg, train_fraction=fraction), data, run, log)
        m = evaluate_reward(
            run,
            data,
            run / "eval",
            clip_baseline=n == 0,
            sim=sim,
            held_out=(val, test),
            n_boot=n_boot,
            log=log,
        )
        train_metrics = json.loads((run / "metrics.json").read_text())
        rows.append(_row(fraction, run, m, train_metrics))
        if n == 0:
            baselines = {
                k: {
                    f: v[f]
                    for f in ("accuracy", "ci95", "n", "accuracy_no_ties", "expected_accuracy")
                    if f in v
                }
                for k, v in m["scorers"].items()
                if k != "reward_model"
            }
            ceiling = m["ceiling"]
    metrics = {
        "rows": rows,
        "baselines": baselines,
        "ceiling": ceiling,
        "config": cfg.to_dict(),
        "seconds": time.perf_counter() - t0,
    }
    metrics["plot"] = str(plot_curve(metrics, out / "learning_curve.png"))
    write_json(out / "metrics.json", metrics)
    return metrics


def curve_table(metrics: dict[str, Any]) -> str:
    """The curve as a text table: one line per fraction, then the baselines and ceilings."""
    lines = [
        f"{'labels':>7} {'train pairs':>11} {'accuracy':>9} {'95% CI':>17} {'no ties':>8} "
        f"{'ECE':>6} {'val acc':>8}"
    ]
    for r in metrics["rows"]:
        ci = "n/a" if not r["ci95"] else f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
        val = "n/a" if r["val_accuracy"] is None else f"{r['val_accuracy']:.4f}"
        no_ties = f"{r['accuracy_no_ties']:.4f}"
        lines.append(
            f"{r['fraction']:>7.0%} {r['n_train_pairs']:>11} {r['accuracy']:>9.4f} "
            f"{ci:>17} {no_ties:>8} {r['ece']:>6.3f} {val:>8}"
        )
    for name, b in metrics["baselines"].items():
        lines.append(f"{name:>19} {b['accuracy']:>9.4f} (n={b['n']})")
    for name, c in metrics["ceiling"].items():
        if isinstance(c, dict) and c.get("accuracy") is not None:
            lines.append(f"{name + ' ceiling':>19} {c['accuracy']:>9.4f}")
    return "\n".join(lines)


def plot_curve(metrics: dict[str, Any], path: str | Path, size: tuple[int, int] = (560, 360)):
    """Draw test accuracy (with 95% CIs) against the share of labels, baselines as flat lines.

    Drawn with PIL (matplotlib is not a dependency); written atomically as PNG.
    """
    w, h = size
    left, right, top, bottom = 56, 150, 20, 40
    rows = metrics["rows"]
    flat = {k: v["accuracy"] for k, v in metrics["baselines"].items()}
    flat.update(
        {
            f"{k} ceiling": v["accuracy"]
            for k, v in metrics["ceiling"].items()
            if isinstance(v, dict) and v.get("accuracy") is not None
        }
    )
    values = [r["accuracy"] for r in rows] + [v for r in rows if r["ci95"] for v in r["ci95"]]
    values += list(flat.values())
    lo, hi = min(values) - 0.02, max(values) + 0.02

    def xy(frac: float, acc: float) -> tuple[float, float]:
        return (left + frac * (w - left - right), top + (hi - acc) / (hi - lo) * (h - top - bottom))

    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(5):
        acc = lo + (hi - lo) * k / 4
        y = xy(0, acc)[1]
        d.line([left - 4, y, left, y], fill="black")
        d.text((4, y - 6), f"{acc:.3f}", fill="black")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = xy(frac, lo)[0]
        d.line([x, h - bottom, x, h - bottom + 4], fill="black")
        d.text((x - 10, h - bottom + 6), f"{frac:.0%}", fill="black")
    d.text((left + 60, h - 14), "share of training labels", fill="black")
    colours = ["gray", "red", "green", "purple", "orange"]
    for n, (name, acc) in enumerate(flat.items()):
        colour = colours[n % len(colours)]
        y = xy(0, acc)[1]
        d.line([left, y, w - right, y], fill=colour)
        d.text((w - right + 6, y - 6), name, fill=colour)
    points = [xy(r["fraction"], r["accuracy"]) for r in rows]
    for r, (x, y) in zip(rows, points, strict=True):
        if r["ci95"]:
            d.line([x, xy(0, r["ci95"][0])[1], x, xy(0, r["ci95"][1])[1]], fill="blue")
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill="blue")
    if len(points) > 1:
        d.line(points, fill="blue", width=2)
    d.text((w - right + 6, points[-1][1] + 6), "reward model", fill="blue")
    path = Path(path)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")
    return path
