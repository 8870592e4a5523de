"""The generator's evaluation: oracle-read accuracies (hand-made readings) and CLIP-space FID."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg

from base_models.generator.evaluate import clip_fid, prompt_scenes, score_prompt_set
from base_models.oracle.reading import OracleReading
from base_models.world.attributes import SceneSpec


def _reading(*objects, background="white", style="flat"):
    objs = [
        {"shape": s, "colour": c, "size": z, "row": 0, "col": i, "position": "top left"}
        for i, (s, c, z) in enumerate(objects)
    ]
    return OracleReading(objects=objs, background=background, style=style)


def _scene(*objects, background="white", style="flat"):
    return SceneSpec.from_record(
        {
            "objects": [
                {"shape": s, "colour": c, "size": z, "row": 0, "col": i}
                for i, (s, c, z) in enumerate(objects)
            ],
            "background": background,
            "style": style,
        }
    )


def test_single_object_scores_count_colour_and_shape_separately():
    scenes = [_scene(("circle", "red", "small"))] * 4
    readings = [
        _reading(("circle", "red", "small")),  # all right
        _reading(("square", "red", "small")),  # colour only
        _reading(("circle", "blue", "large")),  # shape only
        _reading(("square", "red", "small"), ("circle", "blue", "small")),  # split over two
    ]
    m = score_prompt_set(readings, scenes)
    assert m["colour_acc"] == 0.75 and m["shape_acc"] == 0.75
    assert m["both_acc"] == 0.25  # only the first has one object that is both red and a circle
    assert m["all_attributes_acc"] == 0.25 and m["count_acc"] == 0.75
    assert m["style_acc"] == 1.0 and m["background_acc"] == 1.0


def test_style_and_background_are_read_whatever_the_objects():
    scenes = [_scene(("circle", "red", "small"), background="black", style="striped")] * 4
    readings = [
        _reading(("square", "blue", "large"), background="black", style="striped"),
        _reading(("circle", "red", "small"), background="black", style="flat"),
        _reading(("circle", "red", "small"), background="white", style="striped"),
        _reading(background="white", style="dotted"),  # nothing drawn
    ]
    m = score_prompt_set(readings, scenes)
    assert m["style_acc"] == 0.5 and m["background_acc"] == 0.5
    assert m["both_acc"] == 0.5 and m["all_attributes_acc"] == 0.0


def test_two_objects_need_both_bound_right():
    scene = _scene(("star", "yellow", "small"), ("heart", "pink", "large"))
    swapped = _reading(("star", "pink", "small"), ("heart", "yellow", "large"))
    right = _reading(("heart", "pink", "large"), ("star", "yellow", "small"))
    m = score_prompt_set([swapped, right], [scene, scene])
    assert m["colour_acc"] == 1.0 and m["shape_acc"] == 1.0  # each attribute is somewhere
    assert m["both_acc"] == 0.5  # but colours bound to the wrong shapes in the first


def test_prompt_sets_are_deterministic_and_distinct():
    a = [s.to_record() for s, _ in prompt_scenes("single", 5)]
    assert a == [s.to_record() for s, _ in prompt_scenes("single", 5)]
    assert all(len(r["objects"]) == 2 for r in (s.to_record() for s, _ in prompt_scenes("two", 5)))
    assert a != [s.to_record() for s, _ in prompt_scenes("heldout", 5)]


class _Linear(torch.nn.Module):
    """A fixed random projection of pixels: a feature space whose statistics we can compute."""

    def __init__(self):
        super().__init__()
        self.proj = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(0))
        self.num_features = 6

    def forward(self, x):
        return x.float().flatten(1) @ self.proj


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_clip_fid_matches_a_float64_reference():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(64, 3, 8, 8, generator=g)
    fake = (torch.rand(64, 3, 8, 8, generator=g) * 0.8 + 0.1).clamp(0, 1)
    feats = _Linear()
    ours = clip_fid(feats, real, fake)
    ref = _scipy_fid(feats(real).double().numpy(), feats(fake).double().numpy())
    assert ours == pytest.approx(ref, rel=1e-3)
    assert clip_fid(feats, real, real) == pytest.approx(0.0, abs=1e-3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny SD folder and a micro oracle."""
    from base_models.config import load_config
    from base_models.oracle import OracleConfig, train_oracle
    from tests.base_models.sd_fixtures import make_tiny_sd_folder

    root = tmp_path_factory.mktemp("tiny")
    train_oracle(load_config(OracleConfig, "micro"), root / "oracle")
    return make_tiny_sd_folder(root / "sd"), root / "oracle"


def test_style_eval_counts_the_style_the_oracle_reads(tiny):
    from base_models.finetune.evaluate import evaluate_style, style_prompts
    from base_models.generator import Generator
    from base_models.oracle import AttributeOracle

    prompts, scenes = style_prompts("sks", 3)
    assert all(
        p.startswith("sks style, ") and "style" not in p[len("sks style, ") :] for p in prompts
    )
    plain, _ = style_prompts(None, 3)
    assert not any("style" in p for p in plain)
    oracle = AttributeOracle.load(tiny[1])
    metrics, pixels = evaluate_style(
        Generator.from_folder(tiny[0]), oracle, "dotted", prompts, scenes, seeds=2, steps=2
    )
    assert pixels.shape[0] == 6 and metrics["n_images"] == 6
    assert metrics["style_share"] == pytest.approx(metrics["style_read"].get("dotted", 0.0))
    assert sum(metrics["style_read"].values()) == pytest.approx(1.0)


def test_eval_generator_cli_writes_metrics(tiny, tmp_path):
    from typer.testing import CliRunner

    from base_models.cli_base import app as base_app

    sd, oracle = tiny
    out = tmp_path / "eval"
    args = [
        "eval-generator",
        "--model",
        str(sd),
        "--oracle",
        str(oracle),
        "--out",
        str(out),
        "--n-prompts",
        "3",
        "--seeds",
        "2",
        "--n-two",
        "2",
        "--n-heldout",
        "2",
        "--steps",
        "2",
    ]
    result = CliRunner().invoke(base_app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["single"]["n_images"] == 6 and metrics["two"]["n_images"] == 4
    assert 0.0 <= metrics["single"]["colour_acc"] <= 1.0
    assert (out / "samples_single.png").exists()


def test_oracle_calibrate_cli_reports_ece_and_writes_temperatures(tiny, tmp_path):
    import json
    import shutil

    from typer.testing import CliRunner

    from base_models.cli_oracle import app as oracle_app
    from base_models.oracle import AttributeOracle

    sd, oracle = tiny
    model = tmp_path / "oracle"
    shutil.copytree(oracle, model)
    args = ["calibrate", "--model", str(model), "--generator", str(sd), "--n", "6", "--steps", "2"]
    result = CliRunner().invoke(oracle_app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((model / "calibration" / "metrics.json").read_text())
    assert metrics["n_images"] == 6 and not metrics["written"]
    for part in ("generated_before", "generated_after", "renders_before", "renders_after"):
        assert 0.0 <= metrics[part]["all"]["ece"] <= 1.0
    assert set(metrics["temperatures"]) <= {"shape", "colour", "size", "background", "style"}
    assert AttributeOracle.load(model).temperatures == {}  # measured, not written
    result = CliRunner().invoke(oracle_app, [*args, "--write"])
    assert result.exit_code == 0, result.output
    written = json.loads((model / "calibration" / "metrics.json").read_text())["temperatures"]
    assert AttributeOracle.load(model).temperatures == pytest.approx(written)
    bad = CliRunner().invoke(oracle_app, [*args[:-4], "--n", "2"])
    assert bad.exit_code != 0 and "at least 4 images" in str(bad.exception or bad.output)
