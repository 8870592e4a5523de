"""`artalign eval compare RUN_A RUN_B`: two finished runs side by side in one report.

The report's columns are run A's model and run B's model (e.g. the base model's run and the
aligned model's run); the delta is A − B. Images are matched by (prompt, seed), so runs of the
same suite and seed line up pair by pair; prompts only one run has show "no images" on the other
side. Each run's own win-rates (model vs its baseline) are listed under the run's name.
OUT/report.html is the page; OUT/comparison.json the figures side by side with their deltas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import write_json, write_text
from evaluation.report import ReportView, prompt_rows, read_run, render, run_columns


def _deltas(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """aspect -> metric -> figure -> {a, b, delta} for figures both runs measured."""
    out: dict[str, Any] = {}
    for aspect, metrics in a.items():
        for key, figs in metrics.items():
            other = b.get(aspect, {}).get(key)
            if "skipped" in figs or not other or "skipped" in other:
                continue
            for name, fig in figs.items():
                if name not in other or fig.get("value") is None:
                    continue
                vb = other[name].get("value")
                delta = None if vb is None else fig["value"] - vb
                entry = {"a": fig, "b": other[name], "delta": delta}
                out.setdefault(aspect, {}).setdefault(key, {})[name] = entry
    return out


def compare_runs(run_a: str | Path, run_b: str | Path, out: str | Path) -> dict[str, Any]:
    """Write OUT/report.html (A's model vs B's model) and OUT/comparison.json; return the latter."""
    run_a, run_b, out = Path(run_a), Path(run_b), Path(out)
    if out.resolve() in (run_a.resolve(), run_b.resolve()):
        raise ArtalignError(f"--out {out} is one of the runs; pass a new folder")
    metrics_a, manifest_a = read_run(run_a)
    metrics_b, manifest_b = read_run(run_b)
    col_a = run_columns(run_a, metrics_a, manifest_a, prefix="A: ")[0]
    col_b = run_columns(run_b, metrics_b, manifest_b, prefix="B: ")[0]
    rows = prompt_rows(manifest_a)
    seen = {(r.prompt, s) for r in rows for s in r.seeds}
    rows += [r for r in prompt_rows(manifest_b) if not any((r.prompt, s) in seen for s in r.seeds)]
    matched = len(set(col_a.files) & set(col_b.files))
    suite_a = metrics_a.get("settings", {}).get("suite", {}).get("name", "?")
    suite_b = metrics_b.get("settings", {}).get("suite", {}).get("name", "?")
    notes = [
        f"A = {run_a} (suite {suite_a}); B = {run_b} (suite {suite_b}); "
        f"{matched} image pairs matched by prompt and seed."
    ]
    if suite_a != suite_b:
        notes.append("The runs used different suites: figures may not be comparable.")
    rewards = {}
    for label, metrics in (("A: ", metrics_a), ("B: ", metrics_b)):
        values = metrics.get("distributions", {}).get("reward", {}).get("model")
        if values:
            rewards[label + "model"] = values
    view = ReportView(
        title=f"Comparison: {run_a.name} vs {run_b.name}",
        columns=[col_a, col_b],
        rows=rows,
        preference={
            f"A ({run_a.name})": metrics_a.get("comparison", {}).get("preference", {}),
            f"B ({run_b.name})": metrics_b.get("comparison", {}).get("preference", {}),
        },
        rewards=rewards,
        settings={"A": metrics_a.get("settings", {}), "B": metrics_b.get("settings", {})},
        timing={"A": metrics_a.get("timing", {}), "B": metrics_b.get("timing", {})},
        notes=notes,
    )
    result = {
        "a": str(run_a),
        "b": str(run_b),
        "matched_pairs": matched,
        "figures": _deltas(col_a.figures, col_b.figures),
    }
    write_json(out / "comparison.json", result)
    write_text(out / "report.html", render(view))
    return result
