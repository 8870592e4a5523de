"""Option types that several rlhf commands share (`reward train|eval|learning-curve`,
`align ddpo|draft`).

The options every command group shares (--preset, --config, KEY=VALUE overrides) live in
`base_models.cli_options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Data = Annotated[
    Path, typer.Option(help="Label store (.db), Pick-a-Pic .parquet or .jsonl rankings.")
]
Backbone = Annotated[
    str | None,
    typer.Option(help="CLIP folder (or open_clip config name); default from config."),
]
BackboneKind = Annotated[str | None, typer.Option(help="artalign | open_clip | transformers.")]
Pretrained = Annotated[
    str | None, typer.Option(help="open_clip: local .safetensors for a config-name backbone.")
]
Head = Annotated[str | None, typer.Option(help="pickscore, mlp or hybrid.")]
Mode = Annotated[str | None, typer.Option(help="frozen, lora or full.")]

# `align ddpo` and `align draft`: the same options
RunOut = Annotated[Path, typer.Option(help="Run folder: adapters, checkpoint, log, metrics.")]
AlignModel = Annotated[str | None, typer.Option(help="Stable Diffusion folder to align.")]
AlignPrompts = Annotated[str | None, typer.Option(help="Training prompts file, one prompt a line.")]
RewardPath = Annotated[str | None, typer.Option(help="Reward model folder (reward_model).")]
ResumeRun = Annotated[bool, typer.Option(help="Continue the run in --out.")]
