"""`artalign label ...`: the preference store, the labeling app and the simulated raters.

The commands live in `cli_label_store.py` (batch, export, import, status, close, users),
`cli_label_serve.py` (serve) and `cli_label_sim.py` (simulate, agreement); each defines its own
`app`, merged here into the group.
"""

from __future__ import annotations

import typer

from labeling_app import cli_label_serve, cli_label_sim, cli_label_store

app = typer.Typer(
    help="Collect human (or simulated) preference judgments in a SQLite store.",
    no_args_is_help=True,
)
app.add_typer(cli_label_store.app)
app.add_typer(cli_label_serve.app)
app.add_typer(cli_label_sim.app)
