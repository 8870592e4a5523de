"""`artalign prompt train|rewrite`: the prompt optimiser's command group (rlhf.prompt)."""

from __future__ import annotations

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

app = typer.Typer(
    help="Train a small language model that rewrites short prompts (TRL SFT, then GRPO), "
    "and rewrite prompts with it.",
    no_args_is_help=True,
)


@app.command("train")
def train_cmd(
    out: Annotated[Path, typer.Option(help="Run folder: sft/, rewriter/, logs, metrics.json.")],
    data: Annotated[
        str | None, typer.Option(help="Data set folder (metadata.jsonl with attributes).")
    ] = None,
    generator: Annotated[
        str | None, typer.Option(help="Stable Diffusion folder that draws the rewrites.")
    ] = None,
    reward_path: Annotated[
        str | None, typer.Option(help="Reward model folder (reward=reward_model).")
    ] = None,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Supervised rewriting on caption pairs, then GRPO against the generator's image reward."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.prompt.config import PromptConfig
    from rlhf.prompt.train import train_prompt_optimiser

    explicit = {"data": data, "generator": generator, "reward_path": reward_path}
    cfg = config_from_options(PromptConfig, preset, config, overrides, explicit, help_config)
    metrics = train_prompt_optimiser(cfg, out)
    print_metrics("prompt optimiser", metrics, out / "metrics.json")
    typer.echo(f"rewriter: {out / 'rewriter'}  (artalign prompt rewrite --model {out})")


@app.command("rewrite")
def rewrite_cmd(
    prompts: Annotated[list[str], typer.Argument(help="Prompts to rewrite.")],
    model: Annotated[Path, typer.Option(help="Rewriter folder (or its training run folder).")],
    keep_intent: Annotated[
        bool,
        typer.Option(help="Never print a rewrite that drops or contradicts part of the prompt."),
    ] = True,
    candidates: Annotated[
        int,
        typer.Option(help="With --keep-intent: the greedy rewrite, then up to N-1 samples."),
    ] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the sampled candidates.")] = 0,
) -> None:
    """Print the rewrite of each prompt, one a line."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.prompt.rewriter import PromptRewriter

    rewriter = PromptRewriter.load(model, keep_intent, candidates, seed)
    for line in rewriter.rewrite(prompts):
        typer.echo(line)
