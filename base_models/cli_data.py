"""`artalign data ...`: make, sample prompts from, check and preview the procedural data set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from base_models.cli_options import (
    ConfigFile,
    HelpConfig,
    Overrides,
    Preset,
    check_seed,
    resolve_config,
)
from base_models.errors import ArtalignError
from base_models.imaging import make_grid
from base_models.io_utils import atomic_path, write_text
from base_models.world.dataset import DataConfig, make_dataset, sample_prompts

app = typer.Typer(help="Make the procedural art data set.", no_args_is_help=True)


@app.command("make")
def data_make(
    out: Annotated[Path, typer.Option(help="Output folder (HF imagefolder).")],
    n: Annotated[int | None, typer.Option(help="Number of images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    size: Annotated[int | None, typer.Option(help="Image side in pixels.")] = None,
    split: Annotated[str | None, typer.Option(help="train | heldout | all.")] = None,
    exclude_style: Annotated[
        list[str] | None, typer.Option(help="Art style to leave out (repeatable).")
    ] = None,
    unsafe_share: Annotated[float | None, typer.Option(help="Share with a warning sign.")] = None,
    stereotype: Annotated[
        list[str] | None, typer.Option(help="SHAPE:VALUE:P correlation (repeatable).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Write a deterministic procedural data set: images, metadata.jsonl, provenance.json."""
    cfg = resolve_config(DataConfig, preset, config, overrides, help_config)
    flags = {
        "n": n,
        "seed": seed,
        "size": size,
        "split": split,
        "unsafe_share": unsafe_share,
        "exclude_styles": exclude_style or None,
        "stereotypes": stereotype or None,
    }
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, value)
    check_seed(cfg.seed, "seed")
    path = make_dataset(cfg, out, overwrite=overwrite)
    typer.echo(f"wrote {cfg.n} images ({cfg.split} split, {cfg.size}px) to {path}")


@app.command("prompts")
def data_prompts(
    out: Annotated[Path, typer.Option(help="Text file: one prompt per line.")],
    n: Annotated[int, typer.Option(help="Number of prompts.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    split: Annotated[str, typer.Option(help="train | heldout | all.")] = "train",
    objects: Annotated[
        str, typer.Option(help="Objects per prompt: a number (1) or a range (1-3).")
    ] = "1-3",
) -> None:
    """Write N captions drawn from the world (the data set's own captions for that seed)."""
    check_seed(seed)
    lo, _, hi = objects.partition("-")
    try:
        lo_n, hi_n = int(lo), int(hi or lo)
    except ValueError:
        raise ArtalignError(f"--objects {objects!r} is not a number or a range like 1-3") from None
    cfg = DataConfig(
        n=n, seed=seed, split=split, min_objects=lo_n, max_objects=hi_n, unsafe_share=0.0
    )
    write_text(out, "\n".join(sample_prompts(cfg)) + "\n")
    typer.echo(f"wrote {n} prompts ({split} split, {objects} objects) to {out}")


@app.command("check")
def data_check(
    data: Annotated[str, typer.Option(help="Data set: folder, CSV, parquet, or tar shards.")],
    opt_out: Annotated[Path | None, typer.Option(help="Extra opt-out list to honour.")] = None,
) -> None:
    """Load a data set as training would, decode every image, and summarise it."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.data import load_records

    records = load_records(data, opt_out=opt_out)
    sizes = Counter(r.load_image().size for r in tqdm(records, desc="decode", unit="img"))
    styles = Counter(r.attrs.get("style", "?") for r in records)
    typer.echo(f"{len(records)} items usable after opt-out lists")
    typer.echo("image sizes: " + ", ".join(f"{w}x{h}: {c}" for (w, h), c in sizes.items()))
    if set(styles) != {"?"}:
        typer.echo("styles: " + ", ".join(f"{k}: {v}" for k, v in sorted(styles.items())))


@app.command("preview")
def data_preview(
    data: Annotated[str, typer.Option(help="Data set: folder, CSV, parquet, or tar shards.")],
    out: Annotated[Path, typer.Option(help="PNG file for the grid.")],
    n: Annotated[int, typer.Option(help="Number of images.")] = 64,
    scale: Annotated[int, typer.Option(help="Upscale factor (nearest neighbour).")] = 3,
) -> None:
    """Save a grid of the first N images of a data set and print their captions."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.data import load_records

    if n < 1 or scale < 1:
        raise ArtalignError(f"--n and --scale must be >= 1, got --n {n} --scale {scale}")
    records = load_records(data)[:n]
    with atomic_path(out) as tmp:
        make_grid([r.load_image() for r in records], scale=scale).save(tmp, format="PNG")
    for i, r in enumerate(records[:8]):
        typer.echo(f"{i:>3}  {r.text}")
    typer.echo(f"wrote a grid of {len(records)} images to {out}")
