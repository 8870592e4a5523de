"""Style fine-tuning benchmark (issue 3): teach a base generator that never saw a style.

    python benchmarks/style_finetune.py [--run runs/style] [--style dotted]

1. a data set without the style (`data make --exclude-style`), a VAE and UNet trained on it
   (quick presets; the CLIP and oracle of `make demo` are reused: the oracle only reads, and the
   CLIP's text tower only encodes prompts);
2. 20 images of the style, fine-tuned with each method (LoRA, DreamBooth, Textual Inversion);
3. the oracle reads 100 held-out prompts x 4 seeds with the trigger phrase: the share drawn in
   the style (target >= 0.80; base model with the same prompts <= 0.10), and colour / shape
   accuracy against the base model on the same prompts without style (target: drop <= 10 points).
Each step is skipped when its output exists. Prints a table; writes RUN/style_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from base_models.finetune import load_embedding
from base_models.finetune.evaluate import evaluate_style, style_prompts
from base_models.generator import Generator, SampleOutput
from base_models.imaging import make_grid
from base_models.io_utils import write_json
from base_models.oracle import AttributeOracle

STYLES = ("flat", "outlined", "striped", "dotted", "gradient")


def run(args: list[str], done: Path) -> float:
    """Run an artalign command unless `done` exists; return its wall seconds (0 if skipped)."""
    if done.exists():
        return 0.0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "base_models.cli_main", *args], check=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("runs/style"))
    p.add_argument("--demo", type=Path, default=Path("runs/demo"), help="holds clip/, oracle/")
    p.add_argument("--style", default="dotted", choices=STYLES)
    p.add_argument("--n-style", type=int, default=20)
    p.add_argument("--n-prompts", type=int, default=100)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--methods", default="lora,dreambooth,textual-inversion")
    a = p.parse_args()
    r, clip, oracle = a.run, a.demo / "clip", a.demo / "oracle"
    seconds: dict[str, float] = {}
    others = [s for s in STYLES if s != a.style]
    excl = [x for s in [a.style] for x in ("--exclude-style", s)]
    seconds["data"] = run(
        ["data", "make", "--out", str(r / "data"), "--preset", "quick", "--seed", "0", *excl],
        r / "data" / "metadata.jsonl",
    )
    only = [x for s in others for x in ("--exclude-style", s)]
    seconds["style_data"] = run(
        [
            "data",
            "make",
            "--out",
            str(r / "style_images"),
            "--n",
            str(a.n_style),
            "--seed",
            "11",
            *only,
        ],
        r / "style_images" / "metadata.jsonl",
    )
    seconds["vae"] = run(
        [
            "base",
            "train-vae",
            "--data",
            str(r / "data"),
            "--out",
            str(r / "vae"),
            "--preset",
            "quick",
        ],
        r / "vae" / "metrics.json",
    )
    seconds["unet"] = run(
        [
            "base",
            "train-unet",
            "--data",
            str(r / "data"),
            "--vae",
            str(r / "vae"),
            "--clip",
            str(clip),
            "--out",
            str(r / "base"),
            "--preset",
            "quick",
        ],
        r / "base" / "model_index.json",
    )
    methods = a.methods.split(",")
    for m in methods:
        out = r / m
        seconds[m] = run(
            [
                "base",
                "finetune-style",
                "--method",
                m,
                "--model",
                str(r / "base"),
                "--data",
                str(r / "style_images"),
                "--out",
                str(out),
                "--preset",
                "quick",
                "--overwrite",
            ],
            out / "metrics.json",
        )

    torch.manual_seed(0)
    reader = AttributeOracle.load(oracle)
    results: dict[str, dict] = {}
    grids, tokens = [], {}
    plain, scenes = style_prompts(None, a.n_prompts)
    gen = Generator.from_folder(r / "base")
    results["base, no style"], _ = evaluate_style(gen, reader, a.style, plain, scenes, a.seeds)
    for m in methods:
        meta = json.loads((r / m / "metrics.json").read_text())
        token = tokens[m] = meta["token"]
        prompts, _ = style_prompts(token, a.n_prompts)
        key = f"base, prompts with {token}"  # the base model never saw the token
        if key not in results:
            results[key], _ = evaluate_style(gen, reader, a.style, prompts, scenes, a.seeds)
        tuned = Generator.from_folder(r / "base")
        if m == "textual-inversion":
            load_embedding(tuned, r / m)
        else:
            tuned.attach_lora(r / m)
        results[m], pixels = evaluate_style(tuned, reader, a.style, prompts, scenes, a.seeds)
        results[m]["train_seconds"] = meta.get("seconds")
        grids.append((m, pixels[: 8 * a.seeds]))
    ref = results["base, no style"]
    print(f"\nstyle fine-tuning: {a.style}, {a.n_prompts} prompts x {a.seeds} seeds (oracle)")
    print(f"{'model':<34}{'style share':>12}{'colour':>8}{'shape':>8}{'train s':>9}")
    for name, m in results.items():
        ts = m.get("train_seconds")
        print(
            f"{name:<34}{m['style_share']:>12.3f}{m['colour_acc']:>8.3f}{m['shape_acc']:>8.3f}"
            f"{(f'{ts:.0f}' if ts else '-'):>9}"
        )
    for m in methods:
        ok = (
            results[m]["style_share"] >= 0.8
            and results[f"base, prompts with {tokens[m]}"]["style_share"] <= 0.1
            and ref["colour_acc"] - results[m]["colour_acc"] <= 0.10
            and ref["shape_acc"] - results[m]["shape_acc"] <= 0.10
        )
        print(f"  {m}: targets {'met' if ok else 'NOT met'}")
    images = [im for _, px in grids for im in SampleOutput(px, [], []).images]
    make_grid(images, ncols=2 * a.seeds, scale=4).save(r / "style_samples.png")
    write_json(r / "style_metrics.json", {"style": a.style, "seconds": seconds, **results})


if __name__ == "__main__":
    main()
