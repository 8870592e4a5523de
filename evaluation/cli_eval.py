"""`artalign eval ...`: run a suite, compare two runs, list suites and metrics. Thin wrappers.

- `eval run`       sample the suite with the model (and the baseline), write metrics.json and
                   report.html (evaluation/run.py)
- `eval compare`   a side-by-side report of two finished runs (evaluation/compare.py)
- `eval suites`    the bundled suites; `eval metrics` the registered metrics
- `eval calibrate-safety`  evaluation/cli_eval_safety.py, merged into the group here
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from base_models.cli_options import check_seed
from base_models.errors import ArtalignError
from evaluation import cli_eval_safety
from evaluation.compare import compare_runs
from evaluation.registry import get_metric, metric_names
from evaluation.suites import load_suite, suite_names

app = typer.Typer(
    help="Evaluate generators: metrics.json and a self-contained HTML report.",
    no_args_is_help=True,
)


def _print_summary(result: dict[str, Any], out: Path, per_metric: int = 10) -> None:
    """One line per figure (at most `per_metric` per metric; all are in metrics.json): the
    model's value and CI (and the baseline's), or why the metric was skipped."""
    models = result["models"]
    base = models.get("baseline", {})
    for aspect, metrics in models.get("model", {}).items():
        for key, figs in metrics.items():
            if "skipped" in figs:
                typer.echo(f"  {aspect:<12} {key:<28} skipped: {figs['skipped']}")
                continue
            if len(figs) > per_metric:
                typer.echo(
                    f"  {aspect:<12} {key:<28} ({len(figs)} figures; the first "
                    f"{per_metric} below, all in the report)"
                )
            for name, fig in list(figs.items())[:per_metric]:
                label = key if name == key else f"{key}.{name}"
                line = f"  {aspect:<12} {label:<28} {_fmt(fig)}"
                other = base.get(aspect, {}).get(key, {}).get(name)
                if other:
                    line += f"   baseline {_fmt(other)}"
                typer.echo(line)
    for aspect, metrics in result.get("comparison", {}).items():
        for key, figs in metrics.items():
            if "skipped" in figs:
                typer.echo(f"  {aspect:<12} {key:<28} skipped: {figs['skipped']}")
            else:
                for name, fig in figs.items():
                    typer.echo(f"  {aspect:<12} {name:<28} {_fmt(fig)}")
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.html'}")


def _fmt(fig: dict[str, Any]) -> str:
    value, ci = fig.get("value"), fig.get("ci")
    text = "n/a" if value is None else f"{value:.4g}"
    if ci and None not in ci:
        text += f" [{ci[0]:.4g}, {ci[1]:.4g}]"
    prompts = f", {fig['n_clusters']} prompts" if fig.get("n_clusters") is not None else ""
    return text + f" (n={fig.get('n')}{prompts})"


@app.command("run")
def run_cmd(
    model: Annotated[str, typer.Option(help="Stable Diffusion folder (diffusers layout).")],
    out: Annotated[Path, typer.Option(help="Output folder: images, metrics.json, report.html.")],
    suite: Annotated[str, typer.Option(help="Bundled suite name or suite YAML file.")] = "quick",
    lora: Annotated[Path | None, typer.Option(help="LoRA folder to attach to --model.")] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Second SD folder to compare with (same seeds).")
    ] = None,
    baseline_lora: Annotated[
        Path | None, typer.Option(help="LoRA folder to attach to --baseline.")
    ] = None,
    oracle: Annotated[Path | None, typer.Option(help="Attribute oracle folder.")] = None,
    clip: Annotated[Path | None, typer.Option(help="CLIP folder (CLIP score, features).")] = None,
    reward: Annotated[Path | None, typer.Option(help="Reward model folder.")] = None,
    rater: Annotated[
        Path | None, typer.Option(help="Simulated-rater profile YAML (default: built-in).")
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Imagefolder of real images (FID, bias).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Feature cache folder (reference features kept).")
    ] = None,
    extractor: Annotated[
        str, typer.Option(help="Feature extractor: clip, open_clip, inception.")
    ] = "clip",
    extractor_weights: Annotated[
        Path | None,
        typer.Option(help="Local weights of the extractor (inception: a .safetensors file)."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
    seed: Annotated[
        int, typer.Option(help="First seed (image k of item i: S+i*K+k); bootstrap seed.")
    ] = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples per CI.")] = 1000,
    safety_checker: Annotated[
        Path | None, typer.Option(help="Saved safety checker (eval calibrate-safety).")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Fail on a metric that cannot run instead of skipping it.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Sample a suite with the model (and baseline); write metrics.json and report.html."""
    # lazy: torch, kept out of `artalign --help`
    from evaluation.run import run_eval

    if n_boot < 10:
        raise ArtalignError(f"--n-boot must be >= 10, got {n_boot}")
    check_seed(seed)
    options: dict[str, Any] = {
        "oracle_path": oracle,
        "clip_path": clip,
        "reward_path": reward,
        "rater_profile_path": rater,
        "reference_path": reference,
        "cache_dir": cache_dir,
        "extractor": extractor,
        "seed": seed,
        "n_boot": n_boot,
    }
    if device is not None:
        options["device"] = device
    result = run_eval(
        model,
        suite,
        out,
        lora=lora,
        baseline=baseline,
        baseline_lora=baseline_lora,
        strict=strict,
        overwrite=overwrite,
        safety_checker=safety_checker,
        extractor_weights=extractor_weights,
        log=typer.echo,
        **options,
    )
    _print_summary(result, out)


@app.command("compare")
def compare_cmd(
    run_a: Annotated[Path, typer.Argument(help="First run folder (its --out).")],
    run_b: Annotated[Path, typer.Argument(help="Second run folder.")],
    out: Annotated[Path, typer.Option(help="Output folder: report.html, comparison.json.")],
) -> None:
    """Side-by-side report of two finished runs (A's model vs B's model)."""
    result = compare_runs(run_a, run_b, out)
    typer.echo(f"{result['matched_pairs']} image pairs matched; wrote {out / 'report.html'}")


@app.command("suites")
def suites_cmd() -> None:
    """List the bundled evaluation suites."""
    for name in suite_names():
        suite = load_suite(name, check=False)
        metrics = ", ".join(e.key for e in suite.metrics)
        typer.echo(f"{name:<8} {suite.description}\n{'':<8} metrics: {metrics}")


@app.command("metrics")
def metrics_cmd() -> None:
    """List the registered metrics with their aspect."""
    for name in metric_names():
        spec = get_metric(name)
        typer.echo(f"{name:<20} {spec.aspect:<12} {spec.description}")


app.add_typer(cli_eval_safety.app)
