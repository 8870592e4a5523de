"""`artalign reward ...`: train, score, evaluate reward models and draw their learning curves.

The commands live in `cli_reward_train.py` (train, score), `cli_reward_eval.py` (eval,
learning-curve) and `cli_reward_priorities.py` (prioritise); each defines its own `app`, merged
here into the group.
"""

from __future__ import annotations

import typer

from rlhf import cli_reward_eval, cli_reward_priorities, cli_reward_train

app = typer.Typer(
    help="Train, evaluate and score reward models on preference judgments.",
    no_args_is_help=True,
)
app.add_typer(cli_reward_train.app)
app.add_typer(cli_reward_eval.app)
app.add_typer(cli_reward_priorities.app)
