"""`artalign label ...`: the preference store, the labeling app and the simulated raters.

Each sub-module registers its own commands on `label_app`, so this file only composes them.
"""

from __future__ import annotations

import typer

from labeling_app import cli_serve, cli_sim, cli_store

label_app = typer.Typer(
    help="Collect human (or simulated) preference judgments in a SQLite store.",
    no_args_is_help=True,
)
for module in (cli_store, cli_serve, cli_sim):
    module.register(label_app)
