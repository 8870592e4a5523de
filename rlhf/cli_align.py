"""`artalign align ...`: align a generator to a reward (DDPO, reward backpropagation) or to
preference pairs (Diffusion-DPO), with LoRA.

The commands live in `cli_align_ddpo.py`, `cli_align_draft.py` and `cli_align_dpo.py`; each
defines its own `app`, merged here into the group.
"""

from __future__ import annotations

import typer

from rlhf import cli_align_ddpo, cli_align_dpo, cli_align_draft

app = typer.Typer(
    help="Align a generator with LoRA: DDPO, DRaFT (reward backprop), Diffusion-DPO.",
    no_args_is_help=True,
)
app.add_typer(cli_align_ddpo.app)
app.add_typer(cli_align_draft.app)
app.add_typer(cli_align_dpo.app)
