"""`artalign reward ...`: train, evaluate and score reward models on preference judgments.

Each sub-module registers its own commands on `reward_app`, so this file only composes them.
"""

from __future__ import annotations

import typer

from rlhf import cli_eval, cli_train

reward_app = typer.Typer(
    help="Train, evaluate and score reward models on preference judgments.",
    no_args_is_help=True,
)
for module in (cli_train, cli_eval):
    module.register(reward_app)
