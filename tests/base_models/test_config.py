"""Config resolution: defaults -> preset -> YAML -> key=value, with clear errors."""

from __future__ import annotations

import pytest

from base_models.config import load_config, parse_overrides
from base_models.errors import ArtalignError
from base_models.world.dataset import DataConfig


def test_layers_override_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: micro\nseed: 4\nexclude_styles: [flat]\n")
    cfg = load_config(DataConfig, config_file=f, overrides=["seed=9", "unsafe_share=0.5"])
    assert (cfg.n, cfg.seed, cfg.unsafe_share, cfg.exclude_styles) == (16, 9, 0.5, ["flat"])
    assert load_config(DataConfig, "quick").n == 20000


def test_list_and_bool_overrides():
    cfg = load_config(DataConfig, overrides=["stereotypes=star:yellow:0.8,heart:large:0.5"])
    assert cfg.stereotypes == ["star:yellow:0.8", "heart:large:0.5"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["colour=red"], "unknown config key 'colour'"),
        (["n=many"], "expects int"),
        (["n"], "is not key=value"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ArtalignError, match=message):
        load_config(DataConfig, overrides=overrides)


def test_bad_preset_and_file(tmp_path):
    with pytest.raises(ArtalignError, match="unknown preset 'huge'.*micro"):
        load_config(DataConfig, "huge")
    with pytest.raises(ArtalignError, match="does not exist"):
        load_config(DataConfig, config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ArtalignError, match="mapping"):
        load_config(DataConfig, config_file=bad)


def test_help_text_lists_every_field():
    text = DataConfig.help_text()
    assert "unsafe_share" in text and "Share of images" in text and "micro" in text


def test_parse_overrides_keeps_equals_in_value():
    assert parse_overrides(["a=b=c"]) == {"a": "b=c"}
