"""Learning curve: fractions parsing, the table, the PIL plot and a micro end-to-end run."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from base_models.config import load_config
from base_models.errors import ArtalignError
from rlhf.reward.config import RewardConfig
from rlhf.reward.curve import curve_table, learning_curve, parse_fractions, plot_curve
from rlhf.reward.data import split_by_prompt


def test_parse_fractions():
    assert parse_fractions("1, 0.25,0.1,0.25") == [0.1, 0.25, 1.0]
    for bad in ("", "0", "1.5", "a,b", "-0.1"):
        with pytest.raises(ArtalignError, match="fractions"):
            parse_fractions(bad)


METRICS = {
    "rows": [
        {
            "fraction": 0.5,
            "n_train_pairs": 10,
            "accuracy": 0.6,
            "ci95": [0.5, 0.7],
            "accuracy_no_ties": 0.58,
            "ece": 0.1,
            "val_accuracy": 0.61,
        },
        {
            "fraction": 1.0,
            "n_train_pairs": 20,
            "accuracy": 0.7,
            "ci95": None,
            "accuracy_no_ties": 0.69,
            "ece": 0.05,
            "val_accuracy": None,
        },
    ],
    "baselines": {"clip_score": {"accuracy": 0.55, "n": 40}},
    "ceiling": {"raters": {"accuracy": 0.8}, "analytic": {"accuracy": None}},
}


def test_table_and_plot(tmp_path):
    table = curve_table(METRICS)
    assert "50%" in table and "[0.500, 0.700]" in table and "n/a" in table
    assert "clip_score" in table and "raters ceiling" in table
    assert "analytic ceiling" not in table  # no value, no line
    path = plot_curve(METRICS, tmp_path / "curve.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (560, 360)
        assert len(set(im.convert("RGB").getdata())) > 3  # something was drawn


def test_learning_curve_micro(micro_clip, pref_store, tmp_path):
    from rlhf.reward.loaders import load_from_store

    data = load_from_store(pref_store.db)
    cfg = load_config(RewardConfig, "micro", overrides={"backbone": str(micro_clip), "head": "mlp"})
    m = learning_curve(cfg, data, tmp_path / "curve", [1.0, 0.1], n_boot=20)
    assert [r["fraction"] for r in m["rows"]] == [0.1, 1.0]
    assert m["rows"][0]["n_train_pairs"] < m["rows"][1]["n_train_pairs"]
    _, _, test = split_by_prompt(data, cfg.val_frac, cfg.test_frac, cfg.seed)
    # one test set for every point: the split's, not the prompts a small sample left unseen
    assert m["rows"][0]["n_test"] == m["rows"][1]["n_test"] == len(test.all_pairs())
    assert set(m["baselines"]) == {"clip_score", "random"}
    saved = json.loads((tmp_path / "curve" / "metrics.json").read_text())
    assert saved["rows"] == m["rows"]
    assert (tmp_path / "curve" / "learning_curve.png").is_file()
    assert (tmp_path / "curve" / "frac_0.1" / "eval" / "metrics.json").is_file()
