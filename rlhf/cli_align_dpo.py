"""`artalign align dpo`: Diffusion-DPO with LoRA from preference pairs; a thin wrapper over
`rlhf.align.dpo.train_dpo`.

Config layers: defaults -> --preset -> --config YAML -> KEY=VALUE overrides -> the
explicit options (--model, --db / --pairs, --batch). With --resume and no
--preset / --config, the run's own OUT/train_config.yaml is the starting point, so
`artalign align dpo --out OUT --resume max_steps=600` extends a finished run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from base_models.cli_options import (
    ConfigFile,
    HelpConfig,
    Overrides,
    Resume,
    config_from_options,
    print_metrics,
)
from base_models.errors import ArtalignError
from base_models.train_utils import check_empty_out

# Commands of `artalign align`, merged into its group by rlhf/cli_align.py.
app = typer.Typer()

EXPORTS = (".parquet", ".jsonl")


@app.command("dpo")
def dpo_cmd(
    out: Annotated[Path, typer.Option(help="Output folder of the run (lora/, metrics.json...).")],
    model: Annotated[
        str | None, typer.Option(help="Generator: a Stable Diffusion folder (default: config).")
    ] = None,
    db: Annotated[Path | None, typer.Option(help="Label store (.db) to take pairs from.")] = None,
    pairs: Annotated[
        Path | None, typer.Option(help="Exported pairs: Pick-a-Pic .parquet or .jsonl rankings.")
    ] = None,
    batch: Annotated[
        str | None, typer.Option(help="Label store only: use this batch (name or id).")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Preset: micro (tests), quick (CPU), sd15 (GPU).")
    ] = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    resume: Resume = False,
    help_config: HelpConfig = False,
) -> None:
    """Align a generator to preference pairs with Diffusion-DPO (LoRA; reference = base model)."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.align.dpo import train_dpo
    from rlhf.align.dpo_config import DPOConfig

    if help_config:
        config_from_options(DPOConfig, None, None, None, help_config=True)
    if db is not None and pairs is not None:
        raise ArtalignError("pass one of --db STORE or --pairs FILE, not both")
    if db is not None and db.suffix in EXPORTS:
        raise ArtalignError(f"--db {db} is an export file; pass it with --pairs")
    if batch is not None and pairs is not None:
        raise ArtalignError("--batch selects a batch of a label store; an export has no batches")
    check_empty_out(out, resume)
    explicit = {"model": model, "pairs": db or pairs, "data_batch": batch}
    explicit = {k: str(v) for k, v in explicit.items() if v is not None}
    saved = out / "train_config.yaml" if resume else None
    cfg = config_from_options(DPOConfig, preset, config, overrides, explicit, saved=saved)
    if cfg.pairs is None:
        raise ArtalignError("no preference data: pass --db STORE or --pairs FILE")
    metrics = train_dpo(cfg, out, resume=resume, log=typer.echo)
    print_metrics("align dpo", {k: v for k, v in metrics.items() if k != "config"}, out)
