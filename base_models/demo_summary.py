"""Print the figures of a `make demo` run: oracle and CLIP accuracy against their targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# (metrics file, key, target, label): the targets of the foundation issue.
ROWS = (
    ("oracle_eval", "mean_attribute_accuracy", 0.98, "oracle mean per-attribute accuracy"),
    ("oracle_eval", "exact_set_accuracy", 0.95, "oracle exact-set accuracy"),
    ("clip_eval", "zero_shot_colour", 0.95, "CLIP zero-shot colour accuracy"),
    ("clip_eval", "zero_shot_shape", 0.95, "CLIP zero-shot shape accuracy"),
    ("clip_eval", "zero_shot_style", 0.90, "CLIP zero-shot style accuracy"),
    ("clip_eval", "retrieval_i2t_r1", None, "CLIP image->text R@1"),
    ("clip_eval", "retrieval_t2i_r1", None, "CLIP text->image R@1"),
)


def summarise(run: Path) -> str:
    lines = [f"artalign demo: {run}", f"{'figure':<40} {'value':>8} {'target':>8}  met"]
    for folder, key, target, label in ROWS:
        path = run / folder / "metrics.json"
        value = json.loads(path.read_text()).get(key) if path.is_file() else None
        if value is None:
            lines.append(f"{label:<40} {'n/a':>8}")
            continue
        tgt = f"{target:.2f}" if target is not None else "-"
        met = "" if target is None else ("yes" if value >= target else "NO")
        lines.append(f"{label:<40} {value:>8.4f} {tgt:>8}  {met}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")))
