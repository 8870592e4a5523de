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


@app.command("calibrate")
def oracle_calibrate(
    model: Annotated[Path, typer.Option(help="Oracle folder.")],
    generator: Annotated[Path, typer.Option(help="Generator folder whose images to judge.")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for metrics.json (default: MODEL/calibration).")
    ] = None,
    n: Annotated[int, typer.Option(help="Images to draw (half fit, half report).")] = 200,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 20,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale.")] = 3.0,
    write: Annotated[
        bool, typer.Option("--write", help="Store the fitted temperatures in the oracle.")
    ] = False,
) -> None:
    """Measure the oracle's calibration (ECE) on generated images and renders; fit temperatures."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.generator.oracle_calibration import calibrate_oracle

    out = out or model / "calibration"
    metrics = calibrate_oracle(
        model, generator, out, n=n, steps=steps, guidance=guidance, write=write
    )
    rows = [
        ("generated", "generated_before", "generated_after"),
        ("renders", "renders_before", "renders_after"),
    ]
    typer.echo(f"{'images':<11}{'head':<12}{'ECE T=1':>9}{'ECE fit':>9}{'acc':>7}{'T':>7}")
    for name, before, after in rows:
        for head, row in metrics[before].items():
            t = metrics["temperatures"].get(head)
            typer.echo(
                f"{name:<11}{head:<12}{row['ece']:>9.3f}{metrics[after][head]['ece']:>9.3f}"
                f"{row['accuracy']:>7.3f}{'' if t is None else f'{t:.2f}':>7}"
            )
    print_metrics("oracle calibration", {"written": metrics["written"]}, out / "metrics.json")
