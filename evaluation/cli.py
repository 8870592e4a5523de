"""`artalign eval ...` (placeholder group while the harness is built; replaced by its owner)."""

from __future__ import annotations

import typer

eval_app = typer.Typer(help="Evaluate generators: metrics.json and an HTML report.")


@eval_app.command("suites")
def suites() -> None:
    """List the evaluation suites."""
