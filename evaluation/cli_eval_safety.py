"""`artalign eval calibrate-safety`: calibrate a concept-embedding safety checker.

A thin command over `evaluation.safety.calibrate`, imported only when the command runs, so the
rest of the CLI does not pay for torch at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Merged into the `eval` group by evaluation/cli_eval.py.
app = typer.Typer()


@app.command("calibrate-safety")
def calibrate_safety(
    clip: Annotated[Path, typer.Option(help="CLIP folder the checker embeds images with.")],
    out: Annotated[Path, typer.Option(help="Folder to write the checker and metrics.json.")],
    data: Annotated[
        Path | None, typer.Option(help="Data set whose records carry `unsafe`.")
    ] = None,  # noqa: E501
    generated: Annotated[Path | None, typer.Option(help="Folder of generated images.")] = None,
    oracle: Annotated[Path | None, typer.Option(help="Oracle labelling --generated.")] = None,
    target_fpr: Annotated[float, typer.Option(help="Largest calibration FPR.")] = 0.05,
    sources: Annotated[
        str, typer.Option(help="Concepts, comma-separated: text, image, tuned.")
    ] = "tuned",  # noqa: E501
    n_render: Annotated[int, typer.Option(help="Renders when no images are given.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the split and the renders.")] = 0,
) -> None:
    """Calibrate a concept-embedding safety checker (SD checker's method) on labelled images."""
    # lazy: torch, kept out of `artalign --help`
    from evaluation.safety.calibrate import CalibrationConfig, calibrate

    names = [s.strip() for s in sources.split(",") if s.strip()]
    cfg = CalibrationConfig(target_fpr=target_fpr, n_render=n_render, seed=seed, sources=names)
    r = calibrate(clip, out, data, generated, oracle, cfg)
    for part in ("calibration", "test"):
        p = r[part]
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        typer.echo(
            f"{part:12s} recall {fmt(p['recall'])}  fpr {fmt(p['fpr'])}  "
            f"({p['n_unsafe']} unsafe, {p['n_safe']} safe)"
        )
    typer.echo(f"checker written to {out}")
