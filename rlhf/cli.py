"""`artalign reward ...` and `artalign align ...`: the rlhf command groups.

Each sub-module registers its own commands on its group, so this file only composes them.
"""

from __future__ import annotations

import typer

from rlhf import cli_align_ddpo, cli_align_dpo, cli_eval, cli_train

reward_app = typer.Typer(
    help="Train, evaluate and score reward models on preference judgments.",
    no_args_is_help=True,
)
for module in (cli_train, cli_eval):
    module.register(reward_app)

align_app = typer.Typer(
    help="Align a generator to a reward: DDPO and Diffusion-DPO with LoRA.",
    no_args_is_help=True,
)
for module in (cli_align_ddpo, cli_align_dpo):
    module.register(align_app)
