"""Do simulated labels on the generator's own images carry signal? (issue 22, "labels carry signal")

    python benchmarks/align_data.py            # once: 300 prompts x 4 generated images
    python benchmarks/label_signal.py [--data runs/bench/align] [--oracle runs/demo/oracle]
        [--profile configs/raters/default.yaml] [--raters 3] [--illegible 0.4,0.5,0.6]
        [--out runs/bench/label_signal]

Reads every image of the alignment data set once with the oracle and judges all 6 pairs of each
prompt's 4 images by `--raters` independent honest raters of the profile, three ways:
- hard: the utility of the oracle's most likely reading (how raters judged before issue 22);
- expected: the expected utility under the oracle's per-attribute probabilities;
- expected + illegible < x: that, and "both bad" for pairs whose both images' legibility is
  below x (each x of --illegible; the profile's own bar is one row).
Per row: Krippendorff's alpha over the pair answers (nominal; left / right / tie / both_bad),
the share of pairs answered "both bad", and best-of-4: how often a rater prefers the prompt's
best image (highest utility) over each of the other three (expected credit, ties half).
Targets: alpha >= 0.4 and best-of-4 >= 0.80. Writes OUT/metrics.json: one entry per row, the
profile's own as "profile".
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_utils import REPO
from PIL import Image

from base_models.generator import Generator
from base_models.io_utils import write_json
from base_models.oracle import AttributeOracle, read_images
from base_models.oracle.expected import legibility
from base_models.oracle.fidelity import parse_prompt
from base_models.raters import (
    RaterProfile,
    both_illegible,
    load_profile,
    pair_probabilities,
    sample_pair,
    utility,
)
from labeling_app.agreement import krippendorff_alpha

ANSWERS = ("left", "right", "tie", "both_bad")


def load_groups(data: Path) -> list[tuple[str, list[Image.Image]]]:
    """(prompt, its images) per prompt of the data set's label store, in prompt order."""
    db = sqlite3.connect(f"file:{data / 'labels.db'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT prompt.text, image.path FROM image JOIN prompt ON prompt.id = image.prompt_id "
        "ORDER BY prompt.id, image.id"
    ).fetchall()
    db.close()
    groups: dict[str, list[Image.Image]] = defaultdict(list)
    for text, path in rows:
        with Image.open(data / "labels.db.images" / path) as im:
            groups[text].append(im.convert("RGB"))
    return [(t, ims) for t, ims in groups.items() if len(ims) >= 2]


def judge(
    records: list[list[dict]], prompts: list[str], profile: RaterProfile, raters: int, seed: int
) -> dict[str, float]:
    """Alpha, both-bad share and best-of-4 of `raters` honest raters on every pair of a group."""
    rng = np.random.default_rng(seed)
    units, credits, bad = [], [], 0
    for recs, prompt in zip(records, prompts, strict=True):
        required = parse_prompt(prompt)
        u = [utility(r, required, profile) for r in recs]
        legible = [legibility(r) for r in recs]
        best = int(np.argmax(u))
        for i, j in itertools.combinations(range(len(recs)), 2):
            flag = both_illegible([legible[i], legible[j]], profile)
            answers = [sample_pair(u[i], u[j], profile, rng, illegible=flag) for _ in range(raters)]
            units.append([ANSWERS.index(a) for a in answers])
            bad += sum(a == "both_bad" for a in answers)
            if best in (i, j):
                q = pair_probabilities(u[i], u[j], profile, flag)
                p_first = q["left"] + 0.5 * (q["tie"] + q["both_bad"])
                credits.append(p_first if best == i else 1.0 - p_first)
    matrix = np.asarray(units, dtype=np.float64).T  # raters x units
    return {
        "alpha": krippendorff_alpha(matrix, "nominal"),
        "both_bad_share": bad / matrix.size,
        "best_of_k": float(np.mean(credits)),
        "n_pairs": matrix.shape[1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO / "runs/bench/align")
    p.add_argument("--oracle", type=Path, default=REPO / "runs/demo/oracle")
    p.add_argument("--profile", type=Path, default=REPO / "configs/raters/default.yaml")
    p.add_argument("--raters", type=int, default=3)
    p.add_argument("--illegible", default="0.4,0.5,0.6")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "runs/bench/label_signal")
    p.add_argument(
        "--guidance",
        default="",
        help="Comma-separated guidance scales: also draw the first 100 prompts x 4 afresh at "
        "each (20 steps) with --model and judge those (a lever probe).",
    )
    p.add_argument("--model", type=Path, default=REPO / "runs/demo/generator")
    a = p.parse_args()

    t0 = time.perf_counter()
    groups = load_groups(a.data)
    prompts = [t for t, _ in groups]
    oracle = AttributeOracle.load(a.oracle)
    readings = read_images(oracle, [im for _, ims in groups for im in ims])
    it = iter(readings)
    readings_by_group = [[next(it) for _ in ims] for _, ims in groups]
    hard = [[r.to_record() for r in rs] for rs in readings_by_group]
    soft = [[r.to_record(probabilities=True) for r in rs] for rs in readings_by_group]
    profile = load_profile(a.profile)
    plain = dataclasses.replace(profile, illegible_below=None)
    rows = [("hard", hard, plain), ("expected", soft, plain)]
    bars = sorted({float(x) for x in a.illegible.split(",") if x} | {profile.illegible_below or 0})
    for bar in (b for b in bars if b > 0):
        prof = dataclasses.replace(plain, illegible_below=bar)
        rows.append((f"expected, illegible < {bar}", soft, prof))
    print(
        f"{len(prompts)} prompts, {len(readings)} images, {a.raters} raters per pair, "
        f"profile {profile.name}; oracle temperatures {oracle.temperatures or 'none'}"
    )
    print(f"{'raters':<44}{'alpha':>8}{'both bad':>10}{'best-of-k':>11}")
    results: dict[str, dict] = {}
    for name, records, prof in rows:
        m = judge(records, prompts, prof, a.raters, a.seed)
        results[name] = m
        if prof.illegible_below == profile.illegible_below and name != "hard":
            results["profile"] = m
        alpha = "-" if m["alpha"] is None else f"{m['alpha']:.3f}"
        print(f"{name:<44}{alpha:>8}{m['both_bad_share']:>10.3f}{m['best_of_k']:>11.3f}")
    seconds = time.perf_counter() - t0
    print(f"targets: alpha >= 0.40, best-of-k >= 0.80   ({seconds:.0f} s)")
    if a.guidance:
        results["guidance_probe"] = guidance_probe(a, prompts[:100], oracle, profile)
    meta = {"n_prompts": len(prompts), "raters": a.raters, "profile_name": profile.name}
    write_json(a.out / "metrics.json", {**results, **meta, "seconds": round(seconds, 1)})


def guidance_probe(
    a: argparse.Namespace, prompts: list[str], oracle: AttributeOracle, profile: RaterProfile
) -> dict[str, dict]:
    """Alpha and best-of-4 of the profile's raters on fresh images at each guidance scale."""
    generator = Generator.from_folder(a.model)
    k = 4
    flat = [p for p in prompts for _ in range(k)]
    seeds = [1000 * i + j for i in range(len(prompts)) for j in range(k)]
    out = {}
    for g in (float(x) for x in a.guidance.split(",") if x):
        pixels = generator.sample(flat, seeds, steps=20, guidance=g, batch_size=100).pixels
        readings = read_images(oracle, pixels)
        records = [
            [readings[i * k + j].to_record(probabilities=True) for j in range(k)]
            for i in range(len(prompts))
        ]
        m = judge(records, prompts, profile, a.raters, a.seed)
        out[str(g)] = m
        print(f"guidance {g:<5} alpha {m['alpha']:.3f}  best-of-k {m['best_of_k']:.3f}")
    return out


if __name__ == "__main__":
    main()
