"""`artalign align ddpo`: a thin wrapper over rlhf.align.ddpo.

Config layers: defaults -> --preset -> --config YAML -> KEY=VALUE overrides -> the explicit
options (--model, --prompts, --reward, --reward-path); `--resume` without --preset or --config
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


@app.command("ddpo")
def ddpo_cmd(
    out: RunOut,
    model: AlignModel = None,
    prompts: AlignPrompts = None,
    reward: Annotated[
        str | None,
        typer.Option(
            help="reward_model (default), clip_score, oracle_fidelity (research), "
            "compressibility, incompressibility, brightness."
        ),
    ] = None,
    reward_path: RewardPath = None,
    resume: ResumeRun = False,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Align a generator to a reward with DDPO (PPO on the denoising chain) and LoRA."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.align.ddpo import train_ddpo
    from rlhf.align.ddpo_config import DDPOConfig

    explicit = {"model": model, "prompts": prompts, "reward": reward, "reward_path": reward_path}
    saved = out / "train_config.yaml" if resume else None
    cfg = config_from_options(DDPOConfig, preset, config, overrides, explicit, help_config, saved)
    metrics = train_ddpo(cfg, out, resume=resume)
    print_metrics("DDPO", metrics, out / "metrics.json")
    typer.echo(f"adapters: {out / 'lora'}  (diffusers: pipe.load_lora_weights)")
