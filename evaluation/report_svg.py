"""Small inline-SVG plots for the HTML report: grouped bars with CI whiskers, and histograms.

Drawn by hand (no plotting library is a dependency) as plain <svg> elements, so the report stays
one self-contained file: no scripts, no fonts, no external references (inline SVG in HTML needs
no namespace attribute either).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

COLOURS = ("#3b6fb6", "#e07b39", "#4a9a5b", "#9b59b6")  # one per column (model, baseline, ...)


def _fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    mag = abs(x)
    if mag >= 1000 or mag < 0.01:
        return f"{x:.2g}"
    return f"{x:.3g}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values covering [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def legend(labels: Sequence[str]) -> str:
    """A row of coloured keys naming the series, as HTML."""
    keys = "".join(
        f'<span class="key"><span class="swatch" style="background:{COLOURS[i % len(COLOURS)]}">'
        f"</span>{escape(label)}</span>"
        for i, label in enumerate(labels)
    )
    return f'<div class="legend">{keys}</div>'


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[Sequence[float | None]],
    cis: Sequence[Sequence[Sequence[float] | None]] | None = None,
    height: int = 180,
    reference: float | None = None,
) -> str:
    """Grouped bars: one group per name in `groups`, one bar per series, CI whiskers.

    `series[s][g]` is series s's value in group g (None: missing), `cis[s][g]` its [lo, hi];
    `reference` draws a dashed line (e.g. 0.5 for a win-rate).
    """
    n_series = max(1, len(series))
    bar_w = 14 if len(groups) * n_series > 30 else 22
    group_w = bar_w * n_series + 14
    left, top, bottom = 48, 22, 58
    width = max(left + group_w * max(1, len(groups)) + 10, 7 * len(title) + 12, 160)
    values = [v for s in series for v in s if v is not None and math.isfinite(v)]
    for s in cis or []:
        values += [b for ci in s if ci for b in ci if b is not None and math.isfinite(b)]
    if reference is not None:
        values.append(reference)
    lo, hi = min([0.0, *values]), max([0.0, *values])
    if hi == lo:
        hi = lo + 1.0
    plot_h = height - top - bottom

    def y(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="4" y="14" class="ctitle">{escape(title)}</text>',
    ]
    for t in _ticks(lo, hi):
        parts.append(
            f'<line x1="{left}" x2="{width - 6}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'class="grid"/><text x="{left - 4}" y="{y(t) + 3:.1f}" class="tick" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
    for g, name in enumerate(groups):
        x0 = left + g * group_w + 7
        for s, values_s in enumerate(series):
            v = values_s[g] if g < len(values_s) else None
            if v is None or not math.isfinite(v):
                continue
            x = x0 + s * bar_w
            top_y, base_y = min(y(v), y(0)), max(y(v), y(0))
            colour = COLOURS[s % len(COLOURS)]
            parts.append(
                f'<rect x="{x}" y="{top_y:.1f}" width="{bar_w - 3}" '
                f'height="{max(base_y - top_y, 0.5):.1f}" fill="{colour}">'
                f"<title>{escape(name)}: {_fmt(v)}</title></rect>"
            )
            ci = cis[s][g] if cis and s < len(cis) and g < len(cis[s]) else None
            if ci and all(b is not None and math.isfinite(b) for b in ci):
                cx = x + (bar_w - 3) / 2
                parts.append(
                    f'<path d="M{cx:.1f} {y(ci[0]):.1f}V{y(ci[1]):.1f}'
                    f'M{cx - 4:.1f} {y(ci[0]):.1f}h8M{cx - 4:.1f} {y(ci[1]):.1f}h8" '
                    'class="whisker"/>'
                )
        label = name if len(name) <= 20 else name[:19] + "…"
        lx, ly = x0 + (group_w - 14) / 2, height - bottom + 12
        parts.append(
            f'<text x="{lx:.1f}" y="{ly}" class="tick" text-anchor="end" '
            f'transform="rotate(-35 {lx:.1f} {ly})">{escape(label)}</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{width - 6}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="axis"/>'
    )
    if reference is not None:
        parts.append(
            f'<line x1="{left}" x2="{width - 6}" y1="{y(reference):.1f}" '
            f'y2="{y(reference):.1f}" class="ref"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    title: str, samples: Sequence[Sequence[float]], bins: int = 20, height: int = 170
) -> str:
    """Overlaid histograms (as densities over shared bins) of one or more value lists."""
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    arrays = [a[np.isfinite(a)] for a in arrays]
    pooled = np.concatenate([a for a in arrays if len(a)] or [np.zeros(1)])
    lo, hi = float(pooled.min()), float(pooled.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    dens = [np.histogram(a, bins=edges)[0] / max(len(a), 1) for a in arrays]
    top_v = max(float(d.max()) for d in dens) if dens else 1.0
    top_v = top_v or 1.0
    left, top, bottom, width = 48, 22, 30, 420
    plot_w, plot_h = width - left - 10, height - top - bottom

    def x(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / top_v)

    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
        f'<text x="4" y="14" class="ctitle">{escape(title)}</text>',
    ]
    for t in _ticks(0, top_v, 3):
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
            f'class="grid"/><text x="{left - 4}" y="{y(t) + 3:.1f}" class="tick" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
    for t in _ticks(lo, hi, 5):
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - bottom + 14}" class="tick" '
            f'text-anchor="middle">{_fmt(t)}</text>'
        )
    for s, d in enumerate(dens):
        colour = COLOURS[s % len(COLOURS)]
        for b, share in enumerate(d):
            if share <= 0:
                continue
            x0, x1 = x(edges[b]), x(edges[b + 1])
            w, h = max(x1 - x0 - 1, 0.5), y(0) - y(share)
            parts.append(
                f'<rect x="{x0:.1f}" y="{y(share):.1f}" width="{w:.1f}" height="{h:.1f}" '
                f'fill="{colour}" fill-opacity="0.45"/>'
            )
        if len(arrays[s]):
            m = float(arrays[s].mean())
            parts.append(
                f'<line x1="{x(m):.1f}" x2="{x(m):.1f}" y1="{top}" y2="{y(0):.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
    parts.append(
        f'<line x1="{left}" x2="{width - 10}" y1="{y(0):.1f}" y2="{y(0):.1f}" class="axis"/>'
    )
    parts.append("</svg>")
    return "".join(parts)
