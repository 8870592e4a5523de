"""The `artalign` console script.

Command groups come from the `artalign.commands` entry points, so each package registers its own
groups and this module never imports a package above it. One convention everywhere: the group
`artalign G` lives in `<package>/cli_G.py` as a `typer.Typer` named `app` whose commands are
decorated functions; a group too big for one file keeps its commands in `cli_G_<part>.py`, each
with its own `app`, merged into the group with `app.add_typer(part.app)`. A single-command entry
(`generate`, `loop`) is the command function itself. Shared option types and the config layers
(--preset, --config, KEY=VALUE overrides) are in `base_models/cli_options.py`.
Errors a user can fix (`ArtalignError`, a full disk: `disk_errors.py`) print one line and exit with
code 2, without a traceback.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import click
import typer

from base_models.disk_errors import disk_error_message
from base_models.errors import ArtalignError

# Group order in `artalign --help`: the order of the loop.
GROUP_ORDER = (
    "loop",
    "data",
    "oracle",
    "base",
    "generate",
    "label",
    "reward",
    "align",
    "prompt",
    "eval",
)


def build_app() -> typer.Typer:
    """The root app with every installed command group attached."""
    app = typer.Typer(
        name="artalign",
        help="RLHF preference tuning and evaluation for text-to-image diffusion models.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    eps = {ep.name: ep for ep in entry_points(group="artalign.commands")}
    names = [n for n in GROUP_ORDER if n in eps] + sorted(set(eps) - set(GROUP_ORDER))
    for name in names:
        obj = eps[name].load()
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:  # a single command, e.g. `artalign generate`
            app.command(name=name)(obj)
    return app


def _is_usage_error(e: Exception) -> bool:
    """A ClickException of the click that typer >= 0.20 bundles (typer._click), by its interface."""
    return (
        type(e).__module__.startswith("typer.") and hasattr(e, "show") and hasattr(e, "exit_code")
    )


def _usage_line(e: Exception) -> str:
    """Click's usage error in one line, pointing at the command's help, e.g.
    "No such option: --no-such-flag (see `artalign data make --help`)"."""
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "artalign"
    message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
    return f"{message} (see `{where} --help`)"


def _clear_progress_bars() -> None:
    """Close the progress bars an error left open, clearing their lines, so the error is the
    one line a user sees."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.leave = False
        bar.close()


def _error(message: str) -> int:
    _clear_progress_bars()
    click.echo(f"error: {message}", err=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, as a script, exit with) its exit code."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = typer.main.get_command(build_app())
    try:
        command.main(args=argv, prog_name="artalign", standalone_mode=False)
        return 0
    except ArtalignError as e:
        return _error(str(e))
    except (click.exceptions.Exit, typer.Exit) as e:
        return e.exit_code
    except (click.exceptions.Abort, typer.Abort):
        click.echo("aborted", err=True)
        return 130
    except Exception as e:
        # usage errors: click's, or those of the click copy that newer typer releases vendor
        if isinstance(e, click.ClickException) or _is_usage_error(e):
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as asked
                e.show()  # type: ignore[attr-defined]
            else:
                click.echo(f"error: {_usage_line(e)}", err=True)
            return int(e.exit_code)  # type: ignore[attr-defined]
        full = disk_error_message(e)  # a full disk is the user's to fix, not a bug
        if full is not None:
            click.echo(f"error: {full}", err=True)
            return 2
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130


def script() -> None:
    sys.exit(main())


if __name__ == "__main__":
    script()
