"""Print the figures of a `make demo` run against their targets, stage by stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (metrics folder, key (dots go into nested dicts), target (higher is better), label).
ROWS = (
    ("oracle_eval", "mean_attribute_accuracy", 0.98, "oracle mean per-attribute accuracy"),
    ("oracle_eval", "exact_set_accuracy", 0.95, "oracle exact-set accuracy"),
    ("clip_eval", "zero_shot_colour", 0.95, "CLIP zero-shot colour accuracy"),
    ("clip_eval", "zero_shot_shape", 0.95, "CLIP zero-shot shape accuracy"),
    ("clip_eval", "zero_shot_style", 0.90, "CLIP zero-shot style accuracy"),
    ("clip_eval", "retrieval_i2t_r1", None, "CLIP image->text R@1"),
    ("clip_eval", "retrieval_t2i_r1", None, "CLIP text->image R@1"),
    ("vae", "eval_psnr", 28.0, "VAE held-out PSNR (dB)"),
    ("generator_eval", "single.colour_acc", 0.85, "generator colour accuracy (1 object)"),
    ("generator_eval", "single.shape_acc", 0.70, "generator shape accuracy (1 object)"),
    ("generator_eval", "single.both_acc", 0.65, "generator colour+shape (1 object)"),
    ("generator_eval", "heldout.both_acc", None, "generator colour+shape (unseen pairs)"),
    ("generator_eval", "two.both_acc", None, "generator colour+shape (2 objects)"),
    ("generator_eval", "fid_clip.value", None, "generator FID, CLIP features (lower)"),
    ("generator_eval", "fid_clip.real_vs_real", None, "FID real vs real, same features"),
    ("label_sim", "n_written", None, "simulated judgments written"),
    ("label_sim", "ceiling.overall.agreement", None, "agreement of two simulated raters"),
    ("label_sim", "ceiling.overall.accuracy", None, "ceiling of a reward model vs one rater"),
    ("label_agreement", "alpha_pairs_nominal", None, "Krippendorff alpha, pairs (nominal)"),
    ("label_agreement", "alpha_ranks_ordinal", None, "Krippendorff alpha, ranks (ordinal)"),
)


def _get(metrics: dict, key: str):
    for part in key.split("."):
        if not isinstance(metrics, dict):
            return None
        metrics = metrics.get(part)
    return metrics


def summarise(run: Path) -> str:
    lines = [f"artalign demo: {run}", f"{'figure':<40} {'value':>8} {'target':>8}  met"]
    for folder, key, target, label in ROWS:
        path = run / folder / "metrics.json"
        value = _get(json.loads(path.read_text()), key) if path.is_file() else None
        if value is None:
            lines.append(f"{label:<40} {'n/a':>8}")
            continue
        tgt = f"{target:.2f}" if target is not None else "-"
        met = "" if target is None else ("yes" if value >= target else "NO")
        lines.append(f"{label:<40} {value:>8.4f} {tgt:>8}  {met}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
