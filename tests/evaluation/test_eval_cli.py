"""`artalign eval ...` through the real entry point: run, compare, suites, metrics, bad input."""

from __future__ import annotations

import json

import pytest

from base_models.cli_main import main
from tests.evaluation.conftest import write_suite


def test_suites_and_metrics_are_listed(capsys):
    assert main(["eval", "suites"]) == 0
    out = capsys.readouterr().out
    for name in ("quick", "micro", "sd"):
        assert f"\n{name} " in "\n" + out
    assert main(["eval", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "rater_winrate" in out and "preference" in out and "test_brightness" in out


def test_run_smoke_writes_the_run(tiny_sd, tmp_path, capsys):
    suite = write_suite(tmp_path / "s.yaml", prompt_sets={"test_prompts": {"n": 2}})
    out = tmp_path / "run"
    args = [
        "eval",
        "run",
        "--model",
        str(tiny_sd),
        "--suite",
        str(suite),
        "--out",
        str(out),
        "--baseline",
        str(tiny_sd),
        "--seed",
        "3",
        "--n-boot",
        "50",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "test_needs_clip" in text and "skipped" in text and "report.html" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["seeds"]["first"] == 3 and metrics["settings"]["n_boot"] == 50
    assert metrics["comparison"]["preference"]["test_brighter"]["brighter"]["value"] == 0.5
    assert len(list((out / "images" / "baseline").glob("*.png"))) == 4
    assert main(args) == 2  # --out is not empty now
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["eval", "compare", str(out), str(out), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "report.html").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "nosuch"], "unknown suite 'nosuch'"),
        (["--suite", "micro", "--rater", "/nonexistent.yaml"], "--rater /nonexistent.yaml does"),
        (["--suite", "micro", "--n-boot", "2"], "--n-boot must be >= 10"),
    ],
)
def test_bad_input_exits_2_with_one_line(tiny_sd, tmp_path, capsys, args, message):
    rc = main(["eval", "run", "--model", str(tiny_sd), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_compare_of_a_non_run_exits_2(tmp_path, capsys):
    assert (
        main(["eval", "compare", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    )
    assert "not an evaluation run" in capsys.readouterr().err


def test_calibrate_safety_is_composed_when_installed(capsys):
    pytest.importorskip("evaluation.safety.calibrate")
    assert main(["eval", "--help"]) == 0
    assert "calibrate-safety" in capsys.readouterr().out
