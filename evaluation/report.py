"""The HTML report of an evaluation run: one self-contained file, images and plots embedded.

Sections: the run's header; a regression banner (did the first column, the aligned model,
regress bias or safety against the second, with deltas and CIs); a summary table per aspect
(each column a model, each figure with its 95% CI and n, and the delta of the first column over
the second); the win-rates of the model over the baseline; plots (bars with CI whiskers per
metric, attribute distributions from the bias metrics, reward distributions); image grids per
prompt (the models side by side on the same seeds); the exact settings. Images are base64 PNGs,
plots inline SVG, styles inline: the file opens anywhere, offline, and references nothing
outside itself.

`write_report(run_dir)` renders a run folder (what `run_eval` writes); `compare.py` builds a
`ReportView` of two runs and renders it with the same code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import write_text
from evaluation.registry import ASPECTS
from evaluation.report_images import strip_uri
from evaluation.report_svg import bar_chart, histogram, legend

MAX_PROMPTS_PER_SET = 14  # image rows per prompt set in the report (all images stay on disk)


@dataclass
class Column:
    """One model's side of the report: its figures and its images keyed by (prompt, seed)."""

    label: str
    source: str
    figures: dict[str, dict[str, Any]]  # aspect -> metric -> {figure: {...}} | {"skipped": why}
    files: dict[tuple[str, int], Path] = field(default_factory=dict)


@dataclass
class PromptRow:
    prompt: str
    set: str
    category: str | None
    seeds: list[int]


@dataclass
class ReportView:
    """Everything the page shows; built from one run folder or from two (compare)."""

    title: str
    columns: list[Column]
    rows: list[PromptRow]
    preference: dict[str, dict[str, Any]]  # run label -> metric -> figures | skipped
    rewards: dict[str, list[float]]  # column label -> per-image rewards
    settings: dict[str, Any]  # run label -> settings
    timing: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading runs
def read_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics.json, manifest rows) of a finished run folder."""
    run_dir = Path(run_dir)
    metrics_file, manifest = run_dir / "metrics.json", run_dir / "manifest.jsonl"
    if not metrics_file.is_file() or not manifest.is_file():
        raise ArtalignError(
            f"{run_dir} is not an evaluation run (no metrics.json / manifest.jsonl); "
            "pass the --out folder of `artalign eval run`"
        )
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        rows = [
            json.loads(line)
            for line in manifest.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtalignError(
            f"{run_dir}: metrics.json or manifest.jsonl is not JSON ({e})"
        ) from None
    return metrics, rows


def prompt_rows(manifest: list[dict[str, Any]]) -> list[PromptRow]:
    """One row per suite item, in suite order, with the seeds of its images."""
    rows: dict[int, PromptRow] = {}
    for r in manifest:
        row = rows.setdefault(r["item"], PromptRow(r["prompt"], r["set"], r.get("category"), []))
        row.seeds.append(int(r["seed"]))
    return list(rows.values())


def run_columns(
    run_dir: Path, metrics: dict[str, Any], manifest: list[dict[str, Any]], prefix: str = ""
) -> list[Column]:
    """A column per model of the run (model, then baseline when there is one)."""
    settings = metrics.get("settings", {})
    columns = []
    for label, figures in metrics.get("models", {}).items():
        source = settings.get(label) or ""
        lora = settings.get(f"{label}_lora" if label != "model" else "lora")
        if lora:
            source += f" + LoRA {lora}"
        files = {
            (r["prompt"], int(r["seed"])): run_dir / r[f"{label}_file"]
            for r in manifest
            if r.get(f"{label}_file")
        }
        columns.append(Column(prefix + label, source, figures, files))
    return columns


def run_view(run_dir: str | Path) -> ReportView:
    run_dir = Path(run_dir)
    metrics, manifest = read_run(run_dir)
    settings = metrics.get("settings", {})
    suite = settings.get("suite", {})
    return ReportView(
        title=f"Evaluation: suite {suite.get('name', '?')}",
        columns=run_columns(run_dir, metrics, manifest),
        rows=prompt_rows(manifest),
        preference={"model vs baseline": metrics.get("comparison", {}).get("preference", {})},
        rewards=metrics.get("distributions", {}).get("reward", {}),
        settings={"run": settings},
        timing={"run": metrics.get("timing", {})},
        notes=[suite.get("description", "")] if suite.get("description") else [],
    )


# ----------------------------------------------------------------------------- HTML pieces
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ci{color:#777;font-size:12px}.skip{color:#a06000;font-style:italic}
.better{color:#17803d;font-weight:600}.worse{color:#b3261e;font-weight:600}
.chart{margin:4px 12px 12px 0;vertical-align:top}.charts{display:flex;flex-wrap:wrap}
.ctitle{font-size:12px;font-weight:600}.tick{font-size:10px;fill:#555}
.grid{stroke:#eee}.axis{stroke:#888}.whisker{stroke:#111;stroke-width:1.3;fill:none}
.ref{stroke:#b3261e;stroke-dasharray:4 3}
.legend{margin:4px 0}.key{margin-right:14px}
.swatch{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
img.strip{image-rendering:pixelated;display:block}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px}
.note{color:#555}.headline{font-size:1.2em;margin:.4em 0 .8em}
.banner{border:1px solid #ccc;background:#fafafa;padding:4px 12px;margin:8px 0 16px}
.banner ul{margin:0 0 6px}
"""


def _num(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.3e}"
    return escape(str(x))


def _fig_cell(fig: dict[str, Any] | None) -> str:
    if fig is None:
        return '<td class="num">–</td><td class="num">–</td>'
    ci = fig.get("ci")
    ci_text = f' <span class="ci">[{_num(ci[0])}, {_num(ci[1])}]</span>' if ci else ""
    value, n = _num(fig.get("value")), _num(fig.get("n"))
    if fig.get("n_clusters") is not None:  # the CI resampled prompts, not images
        n += f' <span class="ci">({_num(fig["n_clusters"])} prompts)</span>'
    return f'<td class="num">{value}{ci_text}</td><td class="num">{n}</td>'


def ci_verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'better' / 'worse' when figure a's 95% CI lies wholly above or below b's (in the
    direction of a's higher_is_better); '' when the CIs overlap or a CI or the direction is
    missing. The one rule behind the coloured deltas and the regression banner."""
    hib, ci_a, ci_b = a.get("higher_is_better"), a.get("ci"), b.get("ci")
    if hib is None or not ci_a or not ci_b or None in (*ci_a, *ci_b):
        return ""
    if ci_a[0] > ci_b[1]:
        return "better" if hib else "worse"
    if ci_a[1] < ci_b[0]:
        return "worse" if hib else "better"
    return ""


def _delta_cell(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or a.get("value") is None or b.get("value") is None:
        return '<td class="num">–</td>'
    d = a["value"] - b["value"]
    cls = ci_verdict(a, b) if d != 0 else ""  # colour only a difference the CIs support
    sign = "+" if d > 0 else ""
    return f'<td class="num {cls}">{sign}{_num(d)}</td>'


def _metric_keys(columns: list[Column], aspect: str) -> list[str]:
    keys: list[str] = []
    for col in columns:
        keys += [k for k in col.figures.get(aspect, {}) if k not in keys]
    return keys


def _figure_names(results: list[dict[str, Any] | None]) -> list[str]:
    names: list[str] = []
    for r in results:
        if r and "skipped" not in r:
            names += [k for k in r if k not in names]
    return names


def summary_tables(columns: list[Column]) -> str:
    """One table per aspect: each figure's value, CI and n per column, and the delta."""
    two = len(columns) == 2
    head = "".join(f"<th>{escape(c.label)}</th><th>n</th>" for c in columns)
    delta = '<th title="coloured where the 95% CIs do not overlap">Δ (first − second)</th>'
    head = f"<tr><th>metric</th><th>figure</th>{head}{delta if two else ''}</tr>"
    out = []
    for aspect in ASPECTS:
        keys = _metric_keys(columns, aspect)
        if not keys:
            continue
        body = []
        for key in keys:
            results = [c.figures.get(aspect, {}).get(key) for c in columns]
            names = _figure_names(results)
            skipped = [
                f"{c.label}: {r['skipped']}"
                for c, r in zip(columns, results, strict=True)
                if r and "skipped" in r
            ]
            reasons = {r["skipped"] for r in results if r and "skipped" in r}
            if len(skipped) == len(columns) and len(reasons) == 1:
                skipped = list(reasons)  # every column skipped for the same reason: say it once
            for name in names:
                figs = [r.get(name) if r and "skipped" not in r else None for r in results]
                cells = "".join(_fig_cell(f) for f in figs)
                delta = _delta_cell(figs[0], figs[1]) if two else ""
                shown = "" if name == key and len(names) == 1 else escape(name)
                hib = next((f.get("higher_is_better") for f in figs if f), None)
                if hib is not None:
                    arrow = "↑ higher is better" if hib else "↓ lower is better"
                    shown += f' <span class="ci" title="{arrow}">{arrow[0]}</span>'
                body.append(f"<tr><td>{escape(key)}</td><td>{shown}</td>{cells}{delta}</tr>")
            for reason in skipped:
                span = 2 * len(columns) + (1 if two else 0)
                body.append(
                    f'<tr><td>{escape(key)}</td><td colspan="{span + 1}" class="skip">'
                    f"skipped — {escape(reason)}</td></tr>"
                )
        out.append(
            f'<h3>{escape(aspect)}</h3><table class="summary" data-aspect="{aspect}">'
            f"{head}{''.join(body)}</table>"
        )
    note = (
        '<p class="note">Values with their 95% bootstrap CI in brackets; Δ is coloured '
        "(green better, red worse) only where the two CIs do not overlap.</p>"
    )
    return note + "".join(out) if out else '<p class="note">No figures.</p>'


def preference_table(preference: dict[str, dict[str, Any]]) -> str:
    """Win-rates of the first model over the second, with a verdict read from the CI."""
    body = []
    for run, metrics in preference.items():
        for key, result in metrics.items():
            if "skipped" in result:
                body.append(
                    f"<tr><td>{escape(run)}</td><td>{escape(key)}</td>"
                    f'<td colspan="3" class="skip">skipped — {escape(result["skipped"])}'
                    "</td></tr>"
                )
                continue
            for name, fig in result.items():
                ci = fig.get("ci") or [None, None]
                verdict = "no clear preference"
                if ci[0] is not None and ci[0] > 0.5:
                    verdict = '<span class="better">first model preferred</span>'
                elif ci[1] is not None and ci[1] < 0.5:
                    verdict = '<span class="worse">second model preferred</span>'
                body.append(
                    f"<tr><td>{escape(run)}</td><td>{escape(name)}</td>"
                    f"{_fig_cell(fig)}<td>{verdict}</td></tr>"
                )
    if not body:
        return '<p class="note">No win-rates (they need --baseline).</p>'
    return (
        '<table class="summary" data-aspect="preference"><tr><th>run</th><th>win-rate</th>'
        f"<th>value [95% CI]</th><th>n</th><th>verdict</th></tr>{''.join(body)}</table>"
        '<p class="note">Share of matched pairs (same prompt, same seed) where the first '
        "model's image wins; ties count half; 0.5 means no preference.</p>"
    )


def chart_groups(names: list[str], aspect: str) -> list[tuple[str, list[str], list[str], bool]]:
    """How a metric's figures are drawn: [(group, figure names, bar labels, is_distribution)].

    "x.share.v" figures (shares of value v, as people_bias writes) make one distribution chart
    per "x.share"; other bias figures "axis.reader.measure" one chart per measure with a bar
    per "axis.reader"; anything else one chart (split by first name part past 24 figures).
    """
    groups: dict[str, tuple[list[str], list[str], bool]] = {}
    for name in names:
        parts = name.split(".")
        if "share" in parts[:-1]:
            i = parts.index("share")
            key, label, dist = ".".join(parts[: i + 1]), ".".join(parts[i + 1 :]), True
        elif aspect == "bias" and len(parts) >= 2:
            key, label, dist = parts[-1], ".".join(parts[:-1]), False
        elif len(names) > 24 and len(parts) >= 2:
            key, label, dist = parts[0], ".".join(parts[1:]), False
        else:
            key, label, dist = "", name, False
        entry = groups.setdefault(key, ([], [], dist))
        entry[0].append(name)
        entry[1].append(label)
    return [(key, n, lb, d) for key, (n, lb, d) in groups.items()]


def _by_scale(
    names: list[str], labels: list[str], results: list[Any]
) -> list[tuple[list[str], list[str]]]:
    """One chart for figures of one scale; one per figure when magnitudes differ > 20x
    (e.g. images/s next to s/image), so that no bar is too small to see."""
    mags = []
    for n in names:
        values = [
            abs(r[n]["value"])
            for r in results
            if r and "skipped" not in r and n in r and r[n].get("value")
        ]
        mags.append(max(values, default=0.0))
    nonzero = [m for m in mags if m > 0]
    if len(nonzero) < 2 or max(nonzero) <= 20 * min(nonzero):
        return [(names, labels)]
    return [([n], [lb]) for n, lb in zip(names, labels, strict=True)]


def _chart(
    title: str,
    names: list[str],
    labels: list[str],
    results: list[Any],
    reference: float | None = None,
) -> str:
    series, cis = [], []
    for r in results:
        figs = [r.get(n) if r and "skipped" not in r else None for n in names]
        series.append([f.get("value") if f else None for f in figs])
        cis.append([f.get("ci") if f else None for f in figs])
    return bar_chart(title, labels, series, cis, reference=reference)


def plots(view: ReportView) -> str:
    """Bars with CIs per metric, attribute distributions (bias), win-rates, reward histograms."""
    cols = view.columns
    charts, dists = [], []
    for aspect in ASPECTS:
        for key in _metric_keys(cols, aspect):
            results = [c.figures.get(aspect, {}).get(key) for c in cols]
            names = _figure_names(results)
            for group, members, labels, is_dist in chart_groups(names, aspect):
                title = (key if key == aspect else f"{aspect} · {key}") + (
                    f" · {group}" if group else ""
                )
                for m, lb in _by_scale(members, labels, results):
                    (dists if is_dist else charts).append(_chart(title, m, lb, results))
    pref = []
    for run, metrics in view.preference.items():
        figs = [fig for r in metrics.values() if "skipped" not in r for fig in r.items()]
        if figs:
            pref.append(
                bar_chart(
                    f"win-rates · {run}",
                    [n for n, _ in figs],
                    [[f["value"] for _, f in figs]],
                    [[f.get("ci") for _, f in figs]],
                    reference=0.5,
                )
            )
    html = [legend([c.label for c in cols])]
    html.append(
        "<h3>Metrics (bars: value; whiskers: 95% CI)</h3>"
        f'<div class="charts">{"".join(charts)}</div>'
    )
    if dists:
        html.append(f'<h3>Attribute distributions</h3><div class="charts">{"".join(dists)}</div>')
    if pref:
        html.append(f'<h3>Win-rates (dashed: 0.5)</h3><div class="charts">{"".join(pref)}</div>')
    rewards = [(label, v) for label, v in view.rewards.items() if v]
    if rewards:
        hist = histogram("reward per image (lines: means)", [v for _, v in rewards])
        html.append(
            f"<h3>Reward distributions</h3>{legend([lb for lb, _ in rewards])}"
            f'<div class="charts">{hist}</div>'
        )
    return "".join(html)


def pick_rows(rows: list[PromptRow], k: int) -> list[PromptRow]:
    """Up to `k` rows spread over the categories (round robin), in their original order."""
    if len(rows) <= k:
        return rows
    queues: dict[str | None, list[int]] = {}
    for i, row in enumerate(rows):
        queues.setdefault(row.category, []).append(i)
    picked: list[int] = []
    while len(picked) < k:
        for queue in queues.values():
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return [rows[i] for i in sorted(picked)]


def image_grids(view: ReportView, max_per_set: int = MAX_PROMPTS_PER_SET) -> str:
    """Per prompt: each column's images of the prompt's seeds, side by side."""
    by_set: dict[str, list[PromptRow]] = {}
    for row in view.rows:
        by_set.setdefault(row.set, []).append(row)
    head = "".join(f"<th>{escape(c.label)}</th>" for c in view.columns)
    out = []
    for name, rows in by_set.items():
        shown = pick_rows(rows, max_per_set)
        note = f" ({len(shown)} of {len(rows)} prompts)" if len(rows) > len(shown) else ""
        body = []
        for row in shown:
            cells = []
            for c in view.columns:
                uri = strip_uri(
                    [c.files[(row.prompt, s)] for s in row.seeds if (row.prompt, s) in c.files]
                )
                alt = escape(f"{c.label}: {row.prompt}", quote=True)
                cells.append(
                    f'<td><img class="strip" src="{uri}" alt="{alt}"></td>'
                    if uri
                    else '<td class="skip">no images</td>'
                )
            cat = f' <span class="ci">({escape(row.category)})</span>' if row.category else ""
            seeds = f'<br><span class="ci">seeds {row.seeds[0]}–{row.seeds[-1]}</span>'
            body.append(f"<tr><td>{escape(row.prompt)}{cat}{seeds}</td>{''.join(cells)}</tr>")
        out.append(
            f'<h3>prompt set {escape(name)}{note}</h3><table class="grid">'
            f"<tr><th>prompt</th>{head}</tr>{''.join(body)}</table>"
        )
    return "".join(out)


# ----------------------------------------------------------------------------- regression banner
BANNER_ASPECTS = ("bias", "safety")
# Figures that grade an instrument (the safety checker against the oracle's labels), not the
# model: a change in them says nothing about whether the model became less safe.
INSTRUMENT_FIGURES = {"safety": ("recall", "fpr")}


def _judged(key: str, name: str, fig: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    d = fig["value"] - ref["value"]
    ci_m, ci_b = fig.get("ci"), ref.get("ci")
    has_ci = bool(ci_m and ci_b) and None not in (*ci_m, *ci_b)
    verdict = {"worse": "regressed", "better": "improved"}.get(ci_verdict(fig, ref), "")
    # the range of differences consistent with both CIs (conservative: CIs of the two sides)
    delta_ci = [ci_m[0] - ci_b[1], ci_m[1] - ci_b[0]] if has_ci else None
    return {
        "metric": key,
        "figure": name,
        "model": fig["value"],
        "model_ci": ci_m,
        "baseline": ref["value"],
        "baseline_ci": ci_b,
        "delta": d,
        "delta_ci": delta_ci,
        "higher_is_better": fig["higher_is_better"],
        "verdict": verdict or ("no significant change" if has_ci else "no CI"),
    }


def regression_summary(
    model: dict[str, Any], baseline: dict[str, Any], aspects: tuple[str, ...] = BANNER_ASPECTS
) -> dict[str, Any]:
    """Did the model regress against the baseline on `aspects` (default bias and safety)?

    `model` / `baseline` are metrics.json's per-model figures (aspect -> metric -> figure). A
    figure "regressed" only when its 95% CI and the baseline's do not overlap and the model's
    side is the worse one by the figure's higher_is_better; figures without a direction, skipped
    metrics and instrument figures (INSTRUMENT_FIGURES) are not judged. Per aspect: verdict
    ("regressed" if any figure did, else "no significant change"; "not measured" without
    figures), the names of regressed and improved figures, and every judged figure with its
    delta and CIs.
    """
    out: dict[str, Any] = {}
    for aspect in aspects:
        rows = []
        for key, figs in model.get(aspect, {}).items():
            other = baseline.get(aspect, {}).get(key)
            if "skipped" in figs or not other or "skipped" in other:
                continue
            for name, fig in figs.items():
                ref = other.get(name)
                if (
                    name in INSTRUMENT_FIGURES.get(aspect, ())
                    or not ref
                    or fig.get("higher_is_better") is None
                    or fig.get("value") is None
                    or ref.get("value") is None
                ):
                    continue
                rows.append(_judged(key, name, fig, ref))
        names = {
            v: [f"{r['metric']}.{r['figure']}" for r in rows if r["verdict"] == v]
            for v in ("regressed", "improved")
        }
        verdict = (
            "not measured"
            if not rows
            else "regressed"
            if names["regressed"]
            else "no significant change"
        )
        out[aspect] = {"verdict": verdict, "n_figures": len(rows), **names, "figures": rows}
    return out


def _banner_figure(r: dict[str, Any]) -> str:
    def ci(c: list[float] | None) -> str:
        return f" [{_num(c[0])}, {_num(c[1])}]" if c else ""

    sign = "+" if r["delta"] > 0 else ""
    return (
        f"{escape(r['metric'])}.{escape(r['figure'])}: {_num(r['model'])}{ci(r['model_ci'])}"
        f" vs {_num(r['baseline'])}{ci(r['baseline_ci'])}, Δ {sign}{_num(r['delta'])}"
        f"{ci(r['delta_ci'])}"
    )


def regression_banner(columns: list[Column]) -> str:
    """The report's first lines: per aspect of BANNER_ASPECTS, whether the first column
    regressed against the second (the aligned model against its base), with deltas and CIs."""
    if len(columns) != 2:
        return ""
    first, second = columns
    summary = regression_summary(first.figures, second.figures)
    lines = []
    for aspect, s in summary.items():
        if s["verdict"] == "not measured":
            text = "not measured (no comparable figures; add the metric to the suite)"
            lines.append(f'<p class="note"><b>{escape(aspect)}</b>: {text}</p>')
            continue
        judged = [r for r in s["figures"] if r["verdict"] == "regressed"]
        if judged:
            head = (
                f'<b class="worse">{escape(aspect)}: regressed</b> — {len(judged)} of '
                f"{s['n_figures']} figures worse than {escape(second.label)} beyond the "
                "95% CIs:"
            )
        else:
            judged = [r for r in s["figures"] if r["verdict"] == "improved"]
            head = (
                f"<b>{escape(aspect)}: no significant change</b> — {s['n_figures']} "
                f"figures, none worse than {escape(second.label)} beyond the 95% CIs"
                + (f"; {len(judged)} better:" if judged else "")
            )
        items = "".join(f"<li>{_banner_figure(r)}</li>" for r in judged)
        lines.append(f"<p>{head}</p>" + (f"<ul>{items}</ul>" if items else ""))
    return (
        f'<div class="banner" id="regression"><p class="note">{escape(first.label)} vs '
        f"{escape(second.label)} on bias and safety (a figure regressed only where the two "
        f"95% CIs do not overlap on its worse side):</p>{''.join(lines)}</div>"
    )


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def render(view: ReportView, max_per_set: int = MAX_PROMPTS_PER_SET) -> str:
    """The whole page as one HTML string."""
    models = "".join(
        f"<tr><th>{escape(c.label)}</th><td>{escape(c.source)}</td></tr>" for c in view.columns
    )
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in view.notes if n)
    settings = "".join(
        f"<h3>{escape(label)}</h3><pre>{escape(_json(s), quote=False)}</pre>"
        for label, s in {
            **view.settings,
            **{f"{k} timing": v for k, v in view.timing.items()},
        }.items()
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(view.title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(view.title)}</h1>{regression_banner(view.columns)}{notes}"
        f'<table class="models">{models}</table>'
        f"<h2>Summary</h2>{summary_tables(view.columns)}"
        f"<h2>Preference</h2>{preference_table(view.preference)}"
        f"<h2>Plots</h2>{plots(view)}"
        f"<h2>Images</h2>{image_grids(view, max_per_set)}"
        f"<h2>Settings</h2>{settings}</body></html>\n"
    )


def write_report(
    run_dir: str | Path, out: str | Path | None = None, max_per_set: int = MAX_PROMPTS_PER_SET
) -> Path:
    """Render RUN_DIR's report to `out` (default RUN_DIR/report.html), atomically."""
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    write_text(out, render(run_view(run_dir), max_per_set))
    return out
