"""Regenerate the README's results tables from the runs' metrics.json files (no copied figures).

    python benchmarks/readme_results.py              # print the tables
    python benchmarks/readme_results.py --write      # rewrite them in README.md
    python benchmarks/readme_results.py --check      # exit 1 when README.md is stale

`benchmarks/results.yaml` lists the tables: each has a name and rows; a row names a figure, the
metrics.json it comes from (relative to the repository), the key inside it (dots go into nested
objects; a figure of evaluation.stats, {value, ci}, prints with its 95% CI; a list of keys prints
their values joined by " / "), a format, the target
and the command that writes the file. In the README each table sits between
`<!-- results:NAME -->` and `<!-- /results:NAME -->`; --write replaces what is between them
(atomically). A table with `columns` instead of rows lists the items of one list in one file
(e.g. a run's guard checks), one row each. A file that does not exist yet prints as "not run".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml
from bench_utils import REPO

from base_models.io_utils import atomic_path

SPEC = REPO / "benchmarks" / "results.yaml"
README = REPO / "README.md"


def lookup(metrics: Any, key: str) -> Any:
    """metrics[k1][k2]... for key "k1.k2..." (a key may itself hold dots: longest match first)."""
    if key in metrics:
        return metrics[key]
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if isinstance(metrics, dict) and head in metrics:
            return lookup(metrics[head], ".".join(parts[cut:]))
    raise KeyError(key)


def cell(value: Any, fmt: str) -> str:
    """A figure as text: numbers with `fmt`, {value, ci} figures with their CI."""
    if isinstance(value, dict) and "value" in value:
        ci = value.get("ci")
        text = format(value["value"], fmt)
        return text + (f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]" if ci else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return format(value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of one spec entry."""
    lines = ["| figure | value | target | command |", "|---|---|---|---|"]
    for row in rows:
        path = REPO / row["file"]
        if not path.is_file():
            value = "not run"
        else:
            metrics = json.loads(path.read_text())
            keys = row["key"] if isinstance(row["key"], list) else [row["key"]]
            try:
                value = " / ".join(cell(lookup(metrics, k), row.get("fmt", ".3f")) for k in keys)
            except KeyError as e:
                sys.exit(f"{row['file']} has no {e}; fix benchmarks/results.yaml")
        command = row.get("command") or "–"
        command = command if command.startswith(("same", "–")) else f"`{command}`"
        lines.append(f"| {row['figure']} | {value} | {row.get('target', '–')} | {command} |")
    return "\n".join(lines)


def series(spec: dict[str, Any]) -> str:
    """The markdown table of a list in one metrics file: one row per item, one column per key."""
    path = REPO / spec["file"]
    cols = spec["columns"]
    lines = ["| " + " | ".join(c["title"] for c in cols) + " |", "|" + "---|" * len(cols)]
    items = lookup(json.loads(path.read_text()), spec["key"]) if path.is_file() else []
    for item in items:
        cells = [
            cell(item[c["key"]], c.get("fmt", ".3f")) if c["key"] in item else "–" for c in cols
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not items:
        lines.append("| not run |" + " |" * (len(cols) - 1))
    lines.append(f"\n`{spec['file']}` → `{spec['key']}`, written by `{spec['command']}`")
    return "\n".join(lines)


def render(readme: str, tables: dict[str, str]) -> str:
    """The README with every marked table replaced."""
    for name, text in tables.items():
        begin, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
        if begin not in readme or end not in readme:
            sys.exit(f"README.md lacks the markers {begin} ... {end}; add them where it goes")
        head, rest = readme.split(begin, 1)
        _, tail = rest.split(end, 1)
        readme = f"{head}{begin}\n{text}\n{end}{tail}"
    return readme


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="Rewrite the tables in README.md.")
    mode.add_argument("--check", action="store_true", help="Exit 1 if README.md is stale.")
    a = p.parse_args()
    spec = yaml.safe_load(SPEC.read_text())
    tables = {t["name"]: series(t) if "columns" in t else table(t["rows"]) for t in spec["tables"]}
    if not (a.write or a.check):
        for name, text in tables.items():
            print(f"{name}\n{text}\n")
        return
    old = README.read_text(encoding="utf-8")
    new = render(old, tables)
    if a.check:
        sys.exit(0 if new == old else "README.md results are stale; run with --write")
    with atomic_path(README) as tmp:
        tmp.write_text(new, encoding="utf-8")
    print(f"rewrote {len(tables)} tables in {README}")


if __name__ == "__main__":
    main()
