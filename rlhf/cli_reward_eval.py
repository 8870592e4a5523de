"""`artalign reward eval` and `artalign reward learning-curve`: thin wrappers over rlhf.reward.

Both load the preference data with the same policy the model was (or will be) trained with
(gold items, "both bad" answers), every rater kept: training fits the rater flags on its training
prompts, and evaluation leaves out the raters the model's training left out. Both print a table
and write metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from base_models.cli_options import ConfigFile, Overrides, Preset
from base_models.config import load_config, parse_overrides
from base_models.errors import ArtalignError
from rlhf.cli_options import Backbone, BackboneKind, Data, Head, Mode, Pretrained

# Commands of `artalign reward`, merged into its group by rlhf/cli_reward.py.
app = typer.Typer()

Batch = Annotated[
    str | None, typer.Option(help="Label store only: use this batch (name or id); default: all.")
]
ProfileOpt = Annotated[
    Path | None,
    typer.Option(
        "--profile",
        help="Simulated raters' profile YAML: adds the analytic ceiling (needs --oracle).",
    ),
]
OracleOpt = Annotated[
    Path | None, typer.Option(help="Attribute oracle folder, to read utilities (with --profile).")
]
SimMetrics = Annotated[
    Path | None,
    typer.Option(
        help="`label simulate` metrics JSON (spammer names, run ceiling); default: the one "
        "beside the store for --profile, if any."
    ),
]
Boot = Annotated[int, typer.Option(help="Bootstrap draws for the 95% CIs (over prompts).")]


def _load_data(path: Path, batch: str | None, policy: dict[str, Any]) -> Any:
    # lazy: torch, kept out of `artalign --help`
    from rlhf.reward.loaders import load_preferences

    if batch is not None and path.suffix in (".parquet", ".jsonl"):
        raise ArtalignError("--batch selects a batch of a label store; a file has no batches")
    extra = {"batch": batch} if batch is not None else {}
    return load_preferences(
        path,
        include_gold=bool(policy.get("include_gold", False)),
        both_bad=str(policy.get("both_bad", "drop")),
        **extra,
    )


def _simulated(
    profile: Path | None, oracle: Path | None, sim_metrics: Path | None, data: Path
) -> tuple[Any, dict[str, Any] | None]:
    """(SimulatedRaters or None, the simulate metrics dict or None) from the options."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.reward.evaluate import SimulatedRaters

    if (profile is None) != (oracle is None):
        raise ArtalignError("--profile and --oracle go together (the oracle reads utilities)")
    metrics = None
    if profile is None:
        if sim_metrics is not None:
            raise ArtalignError("--sim-metrics needs --profile and --oracle")
        return None, None
    # lazy: torch, kept out of `artalign --help`
    from base_models.oracle.model import AttributeOracle
    from base_models.raters import load_profile

    rater_profile = load_profile(profile)
    if sim_metrics is None:
        beside = data.with_name(f"{data.name}.simulate-{rater_profile.name}.json")
        sim_metrics = beside if beside.is_file() else None
    spammers: frozenset[str] = frozenset()
    if sim_metrics is not None:
        if not sim_metrics.is_file():
            raise ArtalignError(f"--sim-metrics {sim_metrics} does not exist")
        try:
            metrics = json.loads(sim_metrics.read_text())
            spammers = frozenset(r["name"] for r in metrics["raters"] if r["spammer"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise ArtalignError(f"{sim_metrics} is not `label simulate` metrics ({e})") from None
    sim = SimulatedRaters(rater_profile, AttributeOracle.load(oracle), spammers)
    return sim, metrics


def _fmt(x: Any, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def eval_table(metrics: dict[str, Any]) -> str:
    """The printed table: one line per scorer, then the ceilings, then the ratios.

    Ceilings: the rater ceiling (one human predicting another), and with a profile the analytic
    upper bound (a perfect model that may predict ties) and the bound without predicted ties.
    """
    names = {"reward_model": "reward model", "clip_score": "CLIP score", "random": "random"}
    expected = any("expected_accuracy" in s for s in metrics["scorers"].values())
    head = (
        f"{'':<16} {'accuracy':>8} {'95% CI':>16} {'n':>6} {'tau':>7} {'no ties':>8} "
        f"{'ECE':>6} {'Spearman':>8}" + (f" {'expected':>8}" if expected else "")
    )
    lines = [head]
    for key, s in metrics["scorers"].items():
        ci = "n/a" if not s["ci95"] else f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
        row = (
            f"{names.get(key, key):<16} {_fmt(s['accuracy']):>8} {ci:>16} {s['n']:>6} "
            f"{_fmt(s['tau'], '.3g'):>7} {_fmt(s['accuracy_no_ties']):>8} "
            f"{_fmt(s['ece'], '.3f'):>6} {_fmt(s['spearman']['mean'], '.3f'):>8}"
        )
        if expected:
            row += f" {_fmt(s.get('expected_accuracy')):>8}"
        lines.append(row)
    ceilings = [
        ("raters", "", "rater ceiling"),
        ("analytic", "", "analytic ceiling"),
        ("analytic", "_no_ties", "no-ties ceiling"),
    ]
    for key, suffix, label in ceilings:
        c = metrics["ceiling"].get(key)
        if c is None or f"accuracy{suffix}" not in c:
            continue
        n = c.get("n_units", c.get("n"))
        ci95 = c.get(f"ci95{suffix}")
        ci = "n/a" if not ci95 else f"[{ci95[0]:.3f}, {ci95[1]:.3f}]"
        lines.append(f"{label:<16} {_fmt(c[f'accuracy{suffix}']):>8} {ci:>16} {n:>6}")
    ratios = [f"  {k} {v:.3f}" for k, v in metrics["ratios"].items() if v is not None]
    lines.append("reward model ratios (chance_corrected: (model - random) / (ceiling - random)):")
    lines += ratios or ["  n/a"]
    return "\n".join(lines)


@app.command("eval")
def eval_cmd(
    model: Annotated[Path, typer.Option(help="Reward model folder (the --out of reward train).")],
    data: Data,
    out: Annotated[Path, typer.Option(help="Output folder for metrics.json.")],
    batch: Batch = None,
    profile: ProfileOpt = None,
    oracle: OracleOpt = None,
    sim_metrics: SimMetrics = None,
    clip: Annotated[bool, typer.Option(help="Also score the backbone's zero-shot CLIP.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline and bootstrap.")] = 0,
    n_boot: Boot = 1000,
) -> None:
    """Held-out accuracy (ties half credit, tuned tau), ECE, Spearman; baselines and ceilings."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.reward.evaluate import evaluate_reward
    from rlhf.reward.model import read_reward_config

    if n_boot < 1:
        raise ArtalignError(f"--n-boot must be at least 1, got {n_boot}")
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    policy = read_reward_config(model).get("training", {})
    sim, sim_run = _simulated(profile, oracle, sim_metrics, data)
    prefs = _load_data(data, batch, policy)
    metrics = evaluate_reward(
        model,
        prefs,
        out,
        clip_baseline=clip,
        random_seed=seed,
        sim=sim,
        sim_metrics=sim_run,
        n_boot=n_boot,
    )
    typer.echo(eval_table(metrics))
    typer.echo(f"metrics: {out / 'metrics.json'}")


@app.command("learning-curve")
def curve_cmd(
    data: Data,
    out: Annotated[Path, typer.Option(help="Output folder: one model per fraction + metrics.")],
    fractions: Annotated[
        str, typer.Option(help="Shares of the training judgments, comma-separated.")
    ] = "0.1,0.25,0.5,1.0",
    backbone: Backbone = None,
    backbone_kind: BackboneKind = None,
    pretrained: Pretrained = None,
    head: Head = None,
    mode: Mode = None,
    batch: Batch = None,
    profile: ProfileOpt = None,
    oracle: OracleOpt = None,
    n_boot: Boot = 1000,
    preset: Preset = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Train on 10%...100% of the training labels (one split) and evaluate each model."""
    # lazy: torch, kept out of `artalign --help`
    from rlhf.reward.config import RewardConfig
    from rlhf.reward.curve import curve_table, learning_curve, parse_fractions

    shares = parse_fractions(fractions)
    values: dict[str, Any] = parse_overrides(overrides)
    explicit = {
        "backbone": backbone,
        "backbone_kind": backbone_kind,
        "pretrained": pretrained,
        "head": head,
        "mode": mode,
    }
    values.update({k: v for k, v in explicit.items() if v is not None})
    cfg = load_config(RewardConfig, preset, config, values)
    cfg.validate()
    if n_boot < 1:
        raise ArtalignError(f"--n-boot must be at least 1, got {n_boot}")
    sim, _ = _simulated(profile, oracle, None, data)
    prefs = _load_data(data, batch, cfg.to_dict())
    metrics = learning_curve(cfg, prefs, out, shares, sim=sim, n_boot=n_boot, log=typer.echo)
    typer.echo(curve_table(metrics))
    typer.echo(f"metrics: {out / 'metrics.json'}; plot: {metrics['plot']}")
