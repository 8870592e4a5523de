"""Option types and config helpers that every command group shares (`artalign ... --preset`).

Every command that trains takes the same config layers: defaults -> `--preset` -> `--config`
YAML -> `KEY=VALUE` overrides (positional) -> its explicit options; `--help-config` lists keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from base_models.config import BaseConfig, load_config, parse_overrides
from base_models.errors import ArtalignError

Preset = Annotated[str | None, typer.Option(help="Preset: micro (tests), quick (CPU), gpu.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file of config keys.")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides, KEY=VALUE ...")]
HelpConfig = Annotated[bool, typer.Option(help="Print every config key with its help; exit.")]
Resume = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")]


SEED_LIMIT = 2**63  # torch.manual_seed and numpy take seeds in [0, 2**63)


def check_seed(seed: int, name: str = "--seed", count: int = 1) -> None:
    """Refuse a seed (or a run of `count` seeds from it) outside [0, 2**63)."""
    if not 0 <= seed <= SEED_LIMIT - count:
        raise ArtalignError(f"{name} must be between 0 and {SEED_LIMIT - count}, got {seed}")


def resolve_config(cls: type[BaseConfig], preset, config, overrides, help_config):
    """`config_from_options` for a command without explicit options or a saved config."""
    return config_from_options(cls, preset, config, overrides, help_config=help_config)


def config_from_options(
    cls: type[BaseConfig],
    preset: str | None,
    config: Path | None,
    overrides: list[str] | None,
    explicit: dict[str, Any] | None = None,
    help_config: bool = False,
    saved: Path | None = None,
) -> BaseConfig:
    """A command's config: defaults -> preset -> YAML -> KEY=VALUE -> its explicit options.

    `--help-config` prints the keys and exits. `saved` (a resumed run's train_config.yaml) is
    the YAML layer when neither --preset nor --config is given, so `--resume` continues the run
    with the settings it started with.
    """
    if help_config:
        typer.echo(cls.help_text())
        raise typer.Exit(0)
    if saved is not None and preset is None and config is None and saved.is_file():
        config = saved
    values: dict[str, Any] = parse_overrides(overrides)
    values.update({k: v for k, v in (explicit or {}).items() if v is not None})
    return load_config(cls, preset, config, values)


def print_metrics(title: str, metrics: dict, path: Path | None = None) -> None:
    """Print a flat table of the scalar figures in `metrics`."""
    typer.echo(f"\n{title}" + (f"  ({path})" if path else ""))
    for key, value in metrics.items():
        if isinstance(value, float):
            typer.echo(f"  {key:<32} {value:.4f}")
        elif isinstance(value, (int, str, bool)):
            typer.echo(f"  {key:<32} {value}")
