"""`artalign reward prioritise`: put the tasks the reward model doubts most first in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from base_models.errors import ArtalignError

# The command of `artalign reward`, merged into its group by rlhf/cli_reward.py.
app = typer.Typer()


@app.command("prioritise")
def prioritise_cmd(
    db: Annotated[Path, typer.Option(help="The label store (SQLite file).")],
    model: Annotated[Path, typer.Option(help="Reward model folder (the --out of reward train).")],
    batch: Annotated[
        str | None, typer.Option(help="Only this batch (name or id); default: all.")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
) -> None:
    """Set each open task's priority to the reward model's doubt; serve with order=uncertain."""
    # lazy: torch, kept out of `artalign --help`
    from labeling_app.store import Store
    from rlhf.reward.priorities import prioritise, scorer_of
    from rlhf.reward.score import make_reward_fn

    if not db.is_file():
        raise ArtalignError(
            f"label store {db} does not exist; make one with `artalign label batch`"
        )
    score = scorer_of(make_reward_fn(model, device=device))
    with Store(db) as store:
        batch_id = None
        if batch is not None:
            batch_id = store.batch(int(batch) if batch.isdigit() else batch).id
        summary = prioritise(store, score, batch_id)
    if not summary["n_tasks"]:
        typer.echo(f"no open tasks in {db}: nothing to prioritise")
        return
    typer.echo(
        f"set the priority of {summary['n_tasks']} open tasks (mean doubt "
        f"{summary['mean_doubt']:.3f}); serve them with `label serve --order uncertain`"
    )
