"""The HTML report and `compare`: tables, embedded images, plots, nothing external."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from base_models.errors import ArtalignError
from evaluation.compare import compare_runs
from evaluation.report import Column, ReportView, chart_groups, render, write_report
from evaluation.report_images import thumbnail
from evaluation.report_svg import bar_chart

IMG_SRC = re.compile(r'<img class="strip" src="([^"]+)"')


def _decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_report_holds_tables_images_plots_and_settings(ab_run):
    html = (ab_run / "report.html").read_text()
    assert not re.search(r"https?://", html)  # nothing outside the file ...
    assert "<script" not in html and "<link" not in html  # ... and nothing to fetch
    for aspect in ("quality", "alignment", "preference"):
        assert f'data-aspect="{aspect}"' in html
    uris = IMG_SRC.findall(html)
    assert len(uris) == 3 * 2  # one strip per prompt and model
    for uri in uris:
        strip = _decode(uri)
        # two 32 px images, each upscaled x3 (nearest) to 96 px, 2 px padding around each
        assert strip.size == (2 * 96 + 3 * 2, 96 + 2 * 2)
    metrics = json.loads((ab_run / "metrics.json").read_text())
    fig = metrics["models"]["model"]["quality"]["test_brightness"]["brightness"]
    assert f"{fig['value']:.4g}" in html
    assert "skipped — this suite needs a CLIP model; pass --clip DIR" in html  # said once
    assert html.count("<svg") >= 4  # brightness, reward score bars; win-rates; reward histogram
    assert "Reward distributions" in html and "Win-rates" in html
    assert '"first": 10' in html  # the exact settings


def test_report_of_a_saved_run_is_rewritten_the_same(ab_run, tmp_path):
    out = write_report(ab_run, tmp_path / "again.html")
    assert out.read_text() == (ab_run / "report.html").read_text()


def test_thumbnails_upscale_small_and_shrink_large_images():
    assert thumbnail(Image.new("RGB", (32, 32))).size == (96, 96)
    assert thumbnail(Image.new("RGB", (20, 10))).size == (80, 40)
    assert thumbnail(Image.new("RGB", (512, 256))).size == (96, 48)
    assert thumbnail(Image.new("RGB", (64, 64))).size == (64, 64)


def test_bar_chart_draws_bars_to_scale_with_whiskers():
    svg = bar_chart("t", ["a", "b"], [[0.5, 1.0]], [[[0.4, 0.6], None]])
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.02)
    assert svg.count('class="whisker"') == 1
    assert "http" not in svg


def test_chart_groups_make_distributions_and_one_bias_chart_per_measure():
    names = [
        "gender.share.man",
        "gender.share.woman",
        "gender.imbalance",
        "colour.oracle.imbalance",
        "shape.oracle.imbalance",
        "colour.clip.entropy",
    ]
    groups = {g: (labels, dist) for g, _, labels, dist in chart_groups(names, "bias")}
    assert groups["gender.share"] == (["man", "woman"], True)
    assert groups["imbalance"] == (["gender", "colour.oracle", "shape.oracle"], False)
    assert groups["entropy"] == (["colour.clip"], False)
    assert chart_groups(["fid"], "quality") == [("", ["fid"], ["fid"], False)]


def _fig(value, ci, hib=True, n=10):
    return {"value": value, "n": n, "ci": ci, "higher_is_better": hib}


def test_delta_is_coloured_only_where_the_cis_do_not_overlap():
    a = {
        "up": _fig(0.9, [0.8, 1.0]),
        "near": _fig(0.5, [0.4, 0.6]),
        "fid": _fig(30.0, [28, 32], hib=False),
    }
    b = {
        "up": _fig(0.5, [0.4, 0.6]),
        "near": _fig(0.45, [0.35, 0.55]),
        "fid": _fig(20.0, [18, 22], hib=False),
    }
    cols = [
        Column("model", "a", {"quality": {"m": a}}),
        Column("baseline", "b", {"quality": {"m": b}}),
    ]
    html = render(ReportView("t", cols, [], {}, {}, {}))
    assert '<td class="num better">+0.4</td>' in html
    assert '<td class="num ">+0.05</td>' in html  # overlapping CIs: no verdict
    assert '<td class="num worse">+10</td>' in html  # FID went up: worse


def test_compare_puts_two_runs_side_by_side(ab_run, solo_run, tmp_path):
    """solo_run's model is ab_run's baseline (same weights, suite, seeds): the deltas of the
    comparison equal ab_run's model-minus-baseline deltas."""
    result = compare_runs(ab_run, solo_run, tmp_path / "cmp")
    assert result["matched_pairs"] == 6
    ab = json.loads((ab_run / "metrics.json").read_text())["models"]
    got = result["figures"]["quality"]["test_brightness"]["brightness"]
    expected = (
        ab["model"]["quality"]["test_brightness"]["brightness"]["value"]
        - ab["baseline"]["quality"]["test_brightness"]["brightness"]["value"]
    )
    assert got["delta"] == pytest.approx(expected, abs=1e-12)
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert ">A: model<" in html and ">B: model<" in html
    assert len(IMG_SRC.findall(html)) == 6 and not re.search(r"https?://", html)
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text()) == result
    with pytest.raises(ArtalignError, match="not an evaluation run"):
        compare_runs(ab_run, tmp_path, tmp_path / "cmp2")
    with pytest.raises(ArtalignError, match="is one of the runs"):
        compare_runs(ab_run, solo_run, ab_run)


def test_figures_of_different_scales_get_their_own_charts():
    from evaluation.report import _by_scale

    result = {"images_per_s": _fig(100.0, None), "s_per_image": _fig(0.01, None, hib=False)}
    names = list(result)
    assert _by_scale(names, names, [result]) == [
        (["images_per_s"], ["images_per_s"]),
        (["s_per_image"], ["s_per_image"]),
    ]
    close = {"a": _fig(0.5, None), "b": _fig(0.9, None)}
    assert _by_scale(["a", "b"], ["a", "b"], [close]) == [(["a", "b"], ["a", "b"])]


def test_image_rows_are_spread_over_categories():
    from evaluation.report import PromptRow, pick_rows

    rows = [PromptRow(f"p{i}", "s", "a" if i < 6 else "b", [i]) for i in range(9)]
    assert [r.prompt for r in pick_rows(rows, 4)] == ["p0", "p1", "p6", "p7"]
    assert pick_rows(rows, 20) == rows
