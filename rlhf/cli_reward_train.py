"""`artalign reward train` and `artalign reward score`: thin wrappers over rlhf.reward.

Config layers for train: defaults -> --preset -> --config YAML -> KEY=VALUE overrides -> the
explicit options (--backbone, --backbone-kind, --pretrained, --head, --mode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from base_models.cli_options import (
    ConfigFile,
    HelpConfig,
    Overrides,
    Preset,
    config_from_options,
    print_metrics,
)
from base_models.errors import ArtalignError
from rlhf.cli_options import Backbone, BackboneKind, Data, Head, Mode, Pretrained

# Commands of `artalign reward`, merged into its group by rlhf/cli_reward.py.
app = typer.Typer()


@app.command("train")
def train_cmd(
    data: Data,
    out: Annotated[Path, typer.Option(help="Output folder for the reward model.")],
    backbone: Backbone = None,
    backbone_kind: BackboneKind = None,
    pretrained: Pretrained = None,
    head: Head = None,
    mode: Mode = None,
    batch: Annotated[
        str | None, typer.Option(help="Label store only: train on this batch (name or id).")
    ] = None,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Train a reward model on preference judgments; write it and metrics.json to --out."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.reward.config import RewardConfig
    from rlhf.reward.loaders import load_preferences
    from rlhf.reward.train import train_reward

    explicit = {
        "backbone": backbone,
        "backbone_kind": backbone_kind,
        "pretrained": pretrained,
        "head": head,
        "mode": mode,
    }
    cfg = config_from_options(RewardConfig, preset, config, overrides, explicit, help_config)
    cfg.validate()
    if batch is not None and data.suffix in (".parquet", ".jsonl"):
        raise ArtalignError("--batch selects a batch of a label store; a file has no batches")
    extra = {"batch": batch} if batch is not None else {}
    # every rater: train_reward fits the rater policy on the training prompts only
    prefs = load_preferences(data, include_gold=cfg.include_gold, both_bad=cfg.both_bad, **extra)
    s = prefs.summary()
    typer.echo(
        f"{s['pairs']} pairs and {s['rankings']} rankings on {s['prompts']} prompts "
        f"by {s['raters']} raters from {data}"
    )
    train_reward(cfg, prefs, out, log=typer.echo)
    metrics = json.loads((out / "metrics.json").read_text())
    print_metrics("reward", {k: v for k, v in metrics.items() if k != "history"}, out)


@app.command("score")
def score_cmd(
    model: Annotated[Path, typer.Option(help="Reward model folder (the --out of reward train).")],
    images: Annotated[
        Path, typer.Option(help="Image folder, or a .json/.jsonl manifest of {file, prompt}.")
    ],
    out: Annotated[Path, typer.Option(help="Scores file: .jsonl (default) or .csv.")],
    prompts: Annotated[
        Path | None,
        typer.Option(help="Prompts: .jsonl {file, prompt}, or text (one line, or one per image)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per scoring batch.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
) -> None:
    """Score images against their prompts with a reward model; write one row per image."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.reward.score import score_folder

    if batch_size < 1:
        raise ArtalignError(f"--batch-size must be >= 1, got {batch_size}")
    summary = score_folder(
        model, images, out, prompts=prompts, batch_size=batch_size, device=device
    )
    rate = summary["images_per_second"]
    speed = f", {rate:.1f} images/s" if rate else ""
    typer.echo(f"scored {summary['n']} images (mean reward {summary['mean']:.4f}{speed}) -> {out}")
