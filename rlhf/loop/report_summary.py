"""OUT/report.html and OUT/summary.json: the last round's evaluation plus a table of rounds.

The page is the final round's `eval run` report (base model + adapters vs the base model) under
a new opening: the held-out raters' win-rate of the final round with its 95% CI, then a before /
after image grid per prompt (a few prompts per set; all are further down), then the bias / safety
regression banner. Two sections are added before its summary tables. The first has one row per
round, and one for each trainer run beside it (DPO's among them), with the figures that show
whether alignment helped: reward-model score and win-rate, simulated-rater win-rate, oracle-read
fidelity, CLIP score, the reward model's validation accuracy and the aligner's training reward.
The second has the time each stage took. summary.json holds the same figures, the regression
verdicts with deltas and CIs, and every stage's marker.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import write_json, write_text
from evaluation.report import image_grids, regression_summary, run_view
from rlhf.loop.config import LoopConfig

# (label, path in the eval run's metrics.json)
EVAL_FIGURES = (
    ("reward, aligned", "models.model.alignment.reward_score.reward"),
    ("reward, base", "models.baseline.alignment.reward_score.reward"),
    ("reward win-rate", "comparison.preference.reward_winrate.reward_winrate"),
    ("rater win-rate", "comparison.preference.rater_winrate.rater_winrate"),
    ("fidelity, aligned", "models.model.composition.composition.overall"),
    ("fidelity, base", "models.baseline.composition.composition.overall"),
    ("CLIP score, aligned", "models.model.alignment.clip_score.clip_score"),
    ("CLIP score, base", "models.baseline.alignment.clip_score.clip_score"),
)
# (label, file under the round's folder, path in it); {run} is the aligner's folder
RUN_FIGURES = (
    ("judgments", "label_sim/metrics.json", "n_written"),
    ("reward model val accuracy", "reward/metrics.json", "val_accuracy"),
    ("aligner reward, first epoch", "{run}/metrics.json", "first_reward"),
    ("aligner reward, last epoch", "{run}/metrics.json", "last_reward"),
)
TRAINER_NAMES = {"ddpo": "DDPO", "draft": "DRaFT", "dpo": "DPO"}
HEADLINE_PROMPTS = 6  # prompts per prompt set in the opening before/after grid


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def round_row(label: str, round_dir: Path, eval_dir: Path, run: str) -> dict[str, Any]:
    """One row of the rounds table: figures of the eval run and of the round's runs."""
    metrics = _read(eval_dir / "metrics.json")
    figures: dict[str, Any] = {}
    for name, path in EVAL_FIGURES:
        fig = _get(metrics, path)
        if isinstance(fig, dict) and "value" in fig:
            figures[name] = {"value": fig["value"], "ci": fig.get("ci")}
    for name, file, key in RUN_FIGURES:
        if run == "dpo" and "{run}" in file:
            continue
        value = _get(_read(round_dir / file.format(run=run)), key)
        if isinstance(value, (int, float)):
            figures[name] = {"value": value, "ci": None}
    models = metrics.get("models", {})
    regression = regression_summary(models.get("model", {}), models.get("baseline", {}))
    return {
        "round": label,
        "run": run,
        "eval": str(eval_dir),
        "figures": figures,
        "regression": {a: s["verdict"] for a, s in regression.items()},
    }


def rounds_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an HTML table (value [95% CI] per figure, the regression verdicts)."""
    names: list[str] = []
    for row in rows:
        names += [n for n in row["figures"] if n not in names]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    body = []
    for row in rows:
        cells = []
        for n in names:
            fig = row["figures"].get(n)
            if fig is None:
                cells.append('<td class="num">–</td>')
                continue
            ci = fig.get("ci")
            ci_text = f' <span class="ci">[{ci[0]:.4g}, {ci[1]:.4g}]</span>' if ci else ""
            value = fig["value"]
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            cells.append(f'<td class="num">{text}{ci_text}</td>')
        verdicts = "; ".join(f"{a}: {v}" for a, v in row["regression"].items())
        body.append(
            f"<tr><td>{escape(row['round'])}</td>{''.join(cells)}<td>{escape(verdicts)}</td></tr>"
        )
    return (
        f'<table class="summary" data-aspect="rounds"><tr><th>round</th>{head}'
        f"<th>bias / safety vs base</th></tr>{''.join(body)}</table>"
    )


def headline(row: dict[str, Any], trainer: str) -> str:
    """The page's first line: the held-out raters' win-rate of the final round, with its CI."""
    fig = row["figures"].get("rater win-rate")
    if fig is None:
        return '<p class="headline">No held-out rater win-rate: the loop ran without an oracle.</p>'
    ci = fig.get("ci")
    ci_text = f" [95% CI {ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return (
        f'<p class="headline">Held-out simulated raters prefer the aligned model ({escape(trainer)}'
        f", {escape(row['round'])}) over the base model on <b>{fig['value']:.3f}</b>{ci_text} of "
        "pairs (same prompts and seeds; ties and both-bad count half). Chance is 0.500.</p>"
    )


def stages_table(markers: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="num">{m.get("seconds", 0):.1f}</td>'
        f"<td>{'adopted (earlier make demo)' if m.get('adopted') else escape(m['finished_at'])}"
        "</td></tr>"
        for name, m in markers.items()
    )
    return (
        '<table class="summary" data-aspect="stages"><tr><th>stage</th><th>seconds</th>'
        f"<th>finished</th></tr>{rows}</table>"
    )


def write_loop_report(cfg: LoopConfig, out: Path) -> dict[str, Any]:
    """Write OUT/report.html and OUT/summary.json (see the module docstring); return the latter."""
    last = out if cfg.rounds == 1 else out / f"round{cfg.rounds}"
    final = last / "eval"
    page = final / "report.html"
    if not page.is_file():
        raise ArtalignError(f"{page} is missing; rerun the loop to evaluate round {cfg.rounds}")
    rows = [
        round_row(
            f"round {r} ({TRAINER_NAMES[cfg.aligner]})",
            out if r == 1 else out / f"round{r}",
            (out if r == 1 else out / f"round{r}") / "eval",
            cfg.aligner,
        )
        for r in range(1, cfg.rounds + 1)
    ]
    for other in cfg.also_align:
        rows.append(
            round_row(f"round 1 ({TRAINER_NAMES[other]})", out, out / f"eval_{other}", other)
        )
    if cfg.dpo and cfg.eval_dpo:
        rows.append(round_row("round 1 (DPO)", out, out / "eval_dpo", "dpo"))
    found = [_read(path) for path in (out / ".stages").glob("*.done")]
    done = {m.get("stage", "?"): m for m in sorted(found, key=lambda m: m.get("finished_ts", 0))}
    metrics = _read(final / "metrics.json").get("models", {})
    summary = {
        "out": str(out),
        "report": str(out / "report.html"),
        "final_eval": str(final),
        "regression": regression_summary(metrics.get("model", {}), metrics.get("baseline", {})),
        "rounds": rows,
        "stages": done,
    }
    section = (
        f'<h2>Loop rounds</h2><p class="note">Each round\'s adapters against the base '
        f"model on the same prompts and seeds (suite {escape(cfg.eval_suite)}); the "
        f"page below is round {cfg.rounds}'s evaluation.</p>{rounds_table(rows)}"
        f"<h2>Stages</h2>{stages_table(done)}"
    )
    html = page.read_text(encoding="utf-8")
    trainer = TRAINER_NAMES[cfg.aligner]
    title = f"artalign loop: round {cfg.rounds} ({trainer}) vs the base model"
    opening = f"<h1>{escape(title)}</h1>{headline(rows[cfg.rounds - 1], trainer)}"
    opening += f"<h2>Before and after</h2>{image_grids(run_view(final), HEADLINE_PROMPTS)}"
    html = re.sub(r"<h1>.*?</h1>", lambda _m: opening, html, count=1)
    marker = "<h2>Summary</h2>"
    html = (
        html.replace(marker, section + marker, 1)
        if marker in html
        else html.replace("</body>", section + "</body>", 1)
    )
    write_text(out / "report.html", html)
    write_json(out / "summary.json", summary)
    return summary
