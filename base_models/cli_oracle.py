"""`artalign oracle ...`: train and score the attribute oracle (an evaluation instrument)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from base_models.cli_options import (
    ConfigFile,
    HelpConfig,
    Overrides,
    Preset,
    Resume,
    print_metrics,
    resolve_config,
)

app = typer.Typer(help="Train and score the attribute oracle.", no_args_is_help=True)


@app.command("train")
def oracle_train(
    out: Annotated[Path, typer.Option(help="Output folder for the oracle.")],
    resume: Resume = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Train the attribute oracle on fresh procedural images (an evaluation instrument)."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.oracle.config import OracleConfig
    from base_models.oracle.train import train_oracle

    cfg = resolve_config(OracleConfig, preset, config, overrides, help_config)
    metrics = train_oracle(cfg, out, resume=resume)
    print_metrics("oracle (validation during training)", metrics, out)


@app.command("score")
def oracle_score(
    model: Annotated[Path, typer.Option(help="Oracle folder.")],
    data: Annotated[Path, typer.Option(help="Data set with attribute records to score.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for metrics.json (default: MODEL/score).")
    ] = None,
) -> None:
    """Measure the oracle's per-attribute and exact-set accuracy on a data set."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.oracle.evaluate import score_oracle

    out = out or model / "score"
    metrics = score_oracle(model, data, out)
    print_metrics("oracle accuracy", metrics, out / "metrics.json")
