"""`artalign label simulate` and `artalign label agreement`: simulated raters and agreement.

Thin: parse options, open the store, call `labeling_app.simulate` / `labeling_app.agreement`,
print a summary and write metrics JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from labeling_app.agreement import agreement_report
from labeling_app.store import SYSTEM, Store

# Commands of `artalign label`, merged into its group by labeling_app/cli_label.py.
app = typer.Typer()

Db = Annotated[Path, typer.Option(help="The preference store (SQLite file).")]
BatchName = Annotated[
    str | None, typer.Option("--batch", help="Only this batch (name or id); default: all.")
]


def _batch_id(store: Any, batch: str | None) -> int | None:
    if batch is None:
        return None
    return store.batch(int(batch) if batch.isdigit() else batch).id


def _check_enough_raters(store: Any, batch_id: int | None, profile: Any) -> None:
    """ArtalignError if a task needs more judgments (its overlap) than the profile has raters:
    the simulated raters could never complete it, as no rater judges a task twice."""
    overlap = max((t.overlap for t in store.tasks(batch_id) if t.gold is None), default=0)
    if overlap > profile.n_raters:
        raise ArtalignError(
            f"the batch's tasks need {overlap} judgments each (overlap) but profile "
            f"{profile.name!r} has {profile.n_raters} raters; set n_raters: {overlap} or more in "
            "the profile, or make the batch with a smaller --overlap"
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@app.command("simulate")
def simulate_cmd(
    db: Db,
    profile: Annotated[Path, typer.Option(help="Rater profile YAML (see configs/raters/).")],
    oracle: Annotated[Path, typer.Option(help="Oracle folder (the --out of `oracle train`).")],
    n: Annotated[int, typer.Option(help="Judgments to write (fewer if the work runs out).")],
    batch: BatchName = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of spammers and answers; default: the profile's.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Metrics JSON file (or folder); default: DB.simulate-PROFILE.json."),
    ] = None,
    gold_rate: Annotated[float, typer.Option(help="Share of gold tasks mixed in (0-1).")] = 0.0,
) -> None:
    """Judge tasks with simulated raters through the same store API the app uses."""
    # lazy: torch, kept out of `artalign --help`
    from base_models.oracle.model import AttributeOracle
    from base_models.raters import load_profile
    from labeling_app.simulate import simulate

    if n < 1:
        raise ArtalignError(f"--n must be >= 1 (judgments to write), got {n}")
    rater_profile = load_profile(profile)
    model = AttributeOracle.load(oracle)
    with Store(db) as store:
        _check_enough_raters(store, _batch_id(store, batch), rater_profile)
        metrics = simulate(
            store,
            rater_profile,
            model,
            n,
            batch_id=_batch_id(store, batch),
            seed=seed,
            out=out,
            gold_rate=gold_rate,
        )
    spam = [r["name"] for r in metrics["raters"] if r["spammer"]]
    typer.echo(
        f"wrote {metrics['n_written']} judgments by {len(metrics['raters'])} simulated raters "
        f"({rater_profile.name}; spammers: {', '.join(spam) or 'none'})"
    )
    if metrics["no_work_left"]:
        typer.echo(f"no work left after {metrics['n_written']} of {n} judgments")
    overall = metrics["ceiling"]["overall"]
    typer.echo(
        f"agreement ceiling on {metrics['n_tasks_judged']} tasks: two raters agree "
        f"{_fmt(overall['agreement'])}, a perfect reward model scores {_fmt(overall['accuracy'])}"
    )
    typer.echo(f"metrics: {metrics['metrics_path']}")


@app.command("agreement")
def agreement_cmd(
    db: Db,
    batch: BatchName = None,
    out: Annotated[
        Path | None, typer.Option(help="Metrics JSON file (or folder); default: DB.agreement.json.")
    ] = None,
    min_shared: Annotated[
        int, typer.Option(help="Shared units a rater pair needs before kappa can flag a rater.")
    ] = 10,
    kappa_threshold: Annotated[
        float, typer.Option(help="Flag raters whose kappa with everyone is below this.")
    ] = 0.2,
    implied_pairs: Annotated[
        bool, typer.Option(help="Count rank tasks' implied pairs in kappa and the flags.")
    ] = True,
    include_gold: Annotated[bool, typer.Option(help="Include judgments on gold tasks.")] = False,
) -> None:
    """Print Krippendorff's alpha, pairwise Cohen's kappa and flagged raters; write metrics."""
    if min_shared < 1:
        raise ArtalignError(f"--min-shared must be at least 1, got {min_shared}")
    with Store(db) as store:
        batch_id = _batch_id(store, batch)
        judgments = store.judgments(SYSTEM, batch_id=batch_id, include_gold=include_gold)
        names = {r.id: r.name for r in store.raters()}
    report = agreement_report(
        judgments,
        implied_pairs=implied_pairs,
        min_shared=min_shared,
        kappa_threshold=kappa_threshold,
    )
    typer.echo(f"{report.n_judgments} judgments; units judged by 2+ raters: {report.n_units}")
    typer.echo(f"  Krippendorff alpha, pairs (nominal)        {_fmt(report.alpha_pairs)}")
    typer.echo(f"  Krippendorff alpha, ranks (ordinal)        {_fmt(report.alpha_ranks)}")
    typer.echo(f"  Krippendorff alpha, implied pairs (nominal) {_fmt(report.alpha_implied_pairs)}")
    if report.kappa:
        typer.echo("Cohen's kappa (rater a, rater b, kappa, shared units):")
        for (a, b), (k, shared) in report.kappa.items():
            typer.echo(f"  {names.get(a, a):<24} {names.get(b, b):<24} {_fmt(k):>8} {shared:>6}")
    flagged = [names.get(r, str(r)) for r in report.flagged]
    typer.echo(f"raters who agree with nobody: {', '.join(flagged) or 'none'}")
    data = report.to_dict()
    data.update(db=str(db), batch=batch, rater_names={str(k): v for k, v in names.items()})
    path = out if out is not None else db.with_name(f"{db.name}.agreement.json")
    if path.suffix != ".json":
        path = path / "metrics.json"
    write_json(path, data)
    typer.echo(f"metrics: {path}")
