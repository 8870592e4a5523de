"""`artalign align draft`: reward backpropagation (DRaFT-K / AlignProp) with LoRA; a thin
wrapper over rlhf.align.draft.

The same options as `align ddpo`. Config layers: defaults -> --preset -> --config YAML ->
KEY=VALUE overrides (e.g. grad_steps=0 gradient_checkpointing=true for AlignProp,
lv_draws=2 for DRaFT-LV) -> the explicit options; `--resume` without --preset or --config
starts from the run's saved train_config.yaml.
"""

from __future__ import annotations

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
from rlhf.cli_options import AlignModel, AlignPrompts, ResumeRun, RewardPath, RunOut

# Commands of `artalign align`, merged into its group by rlhf/cli_align.py.
app = typer.Typer()


@app.command("draft")
def draft_cmd(
    out: RunOut,
    model: AlignModel = None,
    prompts: AlignPrompts = None,
    reward: Annotated[
        str | None,
        typer.Option(help="A differentiable reward: reward_model (default), brightness."),
    ] = None,
    reward_path: RewardPath = None,
    resume: ResumeRun = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Align a generator by backpropagating a differentiable reward (DRaFT-K, AlignProp), LoRA."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.align.draft import train_draft
    from rlhf.align.draft_config import DraftConfig

    explicit = {"model": model, "prompts": prompts, "reward": reward, "reward_path": reward_path}
    saved = out / "train_config.yaml" if resume else None
    cfg = config_from_options(DraftConfig, preset, config, overrides, explicit, help_config, saved)
    metrics = train_draft(cfg, out, resume=resume)
    print_metrics("DRaFT", metrics, out / "metrics.json")
    typer.echo(f"adapters: {out / 'lora'}  (diffusers: pipe.load_lora_weights)")
