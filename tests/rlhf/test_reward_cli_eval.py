"""`artalign reward eval` and `artalign reward learning-curve` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from base_models.cli_main import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(micro_clip, pref_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli_eval") / "rm"
    args = [
        "reward",
        "train",
        "--data",
        str(pref_store.db),
        "--out",
        str(out),
        "--backbone",
        str(micro_clip),
        "--preset",
        "micro",
        "--head",
        "mlp",
    ]
    assert main(args) == 0
    return out


def test_eval_prints_the_table_and_writes_metrics(trained, pref_store, tmp_path, capsys):
    from base_models.oracle import AttributeOracle

    AttributeOracle(channels=(4, 8, 8), hidden=8).eval().save(tmp_path / "oracle")
    out = tmp_path / "eval"
    args = [
        "reward",
        "eval",
        "--model",
        str(trained),
        "--data",
        str(pref_store.db),
        "--out",
        str(out),
        "--batch",
        "toy",
        "--profile",
        str(REPO / "configs/raters/default.yaml"),
        "--oracle",
        str(tmp_path / "oracle"),
        "--n-boot",
        "20",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    for row in ("reward model", "CLIP score", "random", "rater ceiling", "analytic ceiling"):
        assert row in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ceiling"]["analytic"]["n"] == metrics["scorers"]["reward_model"]["n"]
    assert "expected_accuracy" in metrics["scorers"]["clip_score"]
    assert metrics["data"]["batch"] == "toy"


def test_learning_curve_command(micro_clip, pref_store, tmp_path, capsys):
    out = tmp_path / "curve"
    args = [
        "reward",
        "learning-curve",
        "--data",
        str(pref_store.db),
        "--out",
        str(out),
        "--fractions",
        "0.5,1",
        "--backbone",
        str(micro_clip),
        "--preset",
        "micro",
        "--n-boot",
        "20",
        "head=mlp",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "50%" in text and "100%" in text and "learning_curve.png" in text
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert [r["fraction"] for r in rows] == [0.5, 1.0]
    assert rows[1]["model"].endswith("frac_1")


def _fails(args, capsys, match):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and match in err, err


def test_bad_input_exits_2(trained, micro_clip, pref_store, make_store, tmp_path, capsys):
    db, out = str(pref_store.db), str(tmp_path / "e")
    base = ["reward", "eval", "--out", out]
    _fails([*base, "--model", str(tmp_path / "nope"), "--data", db], capsys, "does not exist")
    _fails([*base, "--model", str(micro_clip), "--data", db], capsys, "reward_config.json")
    _fails(
        [*base, "--model", str(trained), "--data", str(tmp_path / "x.db")], capsys, "does not exist"
    )
    _fails(
        [*base, "--model", str(trained), "--data", db, "--profile", "p.yaml"], capsys, "--oracle"
    )
    ties = make_store(["a red circle", "a blue square"], answer=lambda t: {"choice": "tie"})
    _fails([*base, "--model", str(trained), "--data", str(ties)], capsys, "is a tie")
    _fails([*base, "--model", str(trained), "--data", db, "--n-boot", "0"], capsys, "--n-boot")
    curve = ["reward", "learning-curve", "--data", db, "--out", out, "--backbone", str(micro_clip)]
    _fails([*curve, "--fractions", "0,2"], capsys, "--fractions")
    assert not (tmp_path / "e").exists()  # nothing half-written
