"""`artalign loop`: the whole loop in one command, from nothing to OUT/report.html.

data set -> oracle, CLIP, VAE, UNet -> labeling batch -> judgments (simulated raters, or people
with --human) -> reward model -> DDPO (and Diffusion-DPO) -> evaluation of base vs aligned ->
OUT/report.html and OUT/summary.json. Every stage leaves a done-marker in OUT/.stages, so a
rerun skips finished stages and a killed run continues where it stopped (rlhf/loop/runner.py).
Thin: resolve the config, run `rlhf.loop.run_loop`, print what happened.

Config layers: --preset (micro | quick | sd15; default quick) -> --config YAML -> KEY=VALUE
arguments (STAGE.KEY=VALUE adds to one stage's overrides) -> --rounds / --human / --poll-seconds.
`python -m rlhf.cli_loop ...` runs the same command without the `artalign` entry point.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from base_models.cli_main import main as artalign
from base_models.cli_options import ConfigFile, HelpConfig, Overrides
from base_models.errors import ArtalignError
from rlhf.loop.config import LoopConfig, load_loop_config
from rlhf.loop.runner import Markers, plan, run_loop
from rlhf.loop.stages import build_stages


def loop(
    out: Annotated[Path, typer.Option(help="Loop folder: every stage's outputs, report.html.")],
    preset: Annotated[
        str | None, typer.Option(help="micro (CI smoke), quick (2 CPU cores), sd15 (GPU).")
    ] = None,
    config: ConfigFile = None,
    rounds: Annotated[
        int | None, typer.Option(help="Iterations of label -> reward -> DDPO (default 1).")
    ] = None,
    human: Annotated[
        bool, typer.Option(help="People label: print the app's command, wait for `label close`.")
    ] = False,
    poll_seconds: Annotated[
        float | None, typer.Option(help="--human: seconds between looks at the batch.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="List the stages and whether each would run; run nothing.")
    ] = False,
    overrides: Overrides = None,
    help_config: HelpConfig = False,
) -> None:
    """Run the whole loop: base models, labels, reward model, DDPO and DPO, evaluation, report."""
    if help_config:
        typer.echo(LoopConfig.help_text())
        raise typer.Exit(0)
    extra = list(overrides or [])
    extra += [f"rounds={rounds}"] if rounds is not None else []
    extra += ["human=true"] if human else []
    extra += [f"poll_seconds={poll_seconds}"] if poll_seconds is not None else []
    cfg = load_loop_config(preset, config, extra)
    _check_out(cfg, out)
    if dry_run:
        _dry_run(cfg, out)
        return

    result = run_loop(cfg, out, log=lambda msg: typer.echo(f"[loop] {msg}"))
    _print_summary(result)


def _check_out(cfg, out: Path) -> None:
    """Refuse an --out that is a file, or a non-empty folder that is neither a loop folder
    (OUT/.stages) nor an earlier `make demo` folder the loop adopts: never mix runs."""
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    if not out.is_dir() or (out / ".stages").is_dir():
        return
    if not any(p.name != ".lock" for p in out.iterdir()):
        return
    stages = build_stages(cfg, out.resolve(), wait=lambda *_: None, report=lambda: None)
    if any(s.legacy is not None and s.legacy.exists() for s in stages):
        return
    raise ArtalignError(
        f"--out {out} holds files that are not an artalign loop's (no .stages/); pick a new or "
        "empty --out"
    )


def _dry_run(cfg, out: Path) -> None:
    out = out.resolve()
    markers = Markers(out)
    stages = build_stages(cfg, out, wait=lambda *_: None, report=lambda: None)
    for stage, what in plan(stages, markers):
        if what == "adopt":
            what = f"done by an earlier make demo ({stage.legacy} exists)"
        typer.echo(f"{stage.name:<24} {what}\n  {' '.join(markers.portable(stage.command))}")


def _print_summary(result: dict) -> None:
    summary = result["summary"]
    typer.echo(
        f"\nran {len(result['ran'])} stage(s), skipped {len(result['skipped'])}, "
        f"adopted {len(result['adopted'])} from an earlier make demo"
    )
    for aspect, s in summary["regression"].items():
        worse = f": {', '.join(s['regressed'])}" if s["regressed"] else ""
        typer.echo(f"{aspect}: {s['verdict']} ({s['n_figures']} figures vs base){worse}")
    for row in summary["rounds"]:
        figs = ", ".join(
            f"{k} {v['value']:.4g}"
            for k, v in row["figures"].items()
            if isinstance(v.get("value"), (int, float))
        )
        typer.echo(f"{row['round']}: {figs}")
    typer.echo(
        f"report: {summary['report']}\nsummary: {Path(summary['report']).parent}/summary.json"
    )


def main(argv: list[str] | None = None) -> int:
    """`artalign loop ARGV` through the console script's own entry (its error handling)."""
    return artalign(["loop", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
