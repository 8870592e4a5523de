"""`artalign reward ...`: train, evaluate and score reward models on preference judgments.

Each sub-module registers its own commands on `reward_app`, so this file only composes them.
"""

from __future__ import annotations

import importlib

import typer

reward_app = typer.Typer(
    help="Train, evaluate and score reward models on preference judgments.",
    no_args_is_help=True,
)
for _name in ("cli_train", "cli_eval"):  # TEMP(lead): tolerate missing while helpers build
    try:
        importlib.import_module(f"rlhf.{_name}").register(reward_app)
    except ModuleNotFoundError:
        pass
