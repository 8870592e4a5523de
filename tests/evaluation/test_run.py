"""The suite runner: files, metrics.json's schema, shared seeds, skips, suites and win-rates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from base_models.errors import ArtalignError
from evaluation.context import EvalContext, Samples
from evaluation.preference_metrics import reward_score, reward_winrate
from evaluation.run import job_seeds, run_eval
from evaluation.suites import build_items, load_suite, suite_names
from tests.evaluation.conftest import TEST_PROMPTS, brightness, write_suite

N_IMAGES = len(TEST_PROMPTS) * 2  # 3 prompts x 2 seeds


def _png(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), dict(im.text)


def _figures(metrics: dict):
    """Every stored figure dict of metrics.json (models and comparison)."""
    for side in [*metrics["models"].values(), metrics["comparison"]]:
        for by_metric in side.values():
            for result in by_metric.values():
                if "skipped" not in result:
                    yield from result.values()


def test_job_seeds_follow_the_rule():
    assert job_seeds(2, 3, 10) == [(0, 10), (0, 11), (0, 12), (1, 13), (1, 14), (1, 15)]


def test_run_writes_images_manifest_metrics_and_report(ab_run):
    for label in ("model", "baseline"):
        files = sorted((ab_run / "images" / label).glob("*.png"))
        assert [f.name for f in files] == [f"{j:04d}.png" for j in range(N_IMAGES)]
    assert (ab_run / "report.html").stat().st_size > 1000
    manifest = [json.loads(x) for x in (ab_run / "manifest.jsonl").read_text().splitlines()]
    assert [r["item"] for r in manifest] == [0, 0, 1, 1, 2, 2]
    assert [r["prompt"] for r in manifest[::2]] == TEST_PROMPTS
    metrics = json.loads((ab_run / "metrics.json").read_text())
    assert set(metrics) == {"settings", "models", "comparison", "distributions", "timing"}
    s = metrics["settings"]
    assert s["suite"]["name"] == "ab" and s["sampling"]["steps"] == 2
    assert s["seeds"] == {
        "first": 10,
        "per_item": 2,
        "n_items": 3,
        "n_images": N_IMAGES,
        "rule": s["seeds"]["rule"],
    }
    assert s["baseline"] and s["versions"]["torch"] == torch.__version__
    assert set(metrics["models"]) == {"model", "baseline"}
    figures = list(_figures(metrics))
    assert len(figures) == 2 * 2 + 3  # brightness, reward per model; 3 win-rates
    for fig in figures:
        assert set(fig) - {"n_clusters"} == {"value", "n", "ci", "higher_is_better"}
        assert fig.get("n_clusters", 3) == 3  # where the CI resampled prompts: the 3 prompts
        assert fig["n"] == N_IMAGES
        assert fig["ci"][0] <= fig["value"] + 1e-12 and fig["value"] <= fig["ci"][1] + 1e-12
    skipped = metrics["models"]["model"]["alignment"]["test_needs_clip"]
    assert "--clip" in skipped["skipped"]
    assert set(metrics["comparison"]["preference"]) == {
        "test_brighter",
        "reward_winrate",
        "rater_winrate",
    }
    assert metrics["timing"]["sampling_s"]["model"] > 0


def test_seeds_are_shared_and_figures_match_a_recomputation(ab_run, tiny_sd, tiny_sd_other):
    """Image j of both models has the same prompt and seed; the figures are those of the pixels."""
    from base_models.generator import Generator

    prompts, seeds = [], []
    for j in range(N_IMAGES):
        _, meta_m = _png(ab_run / "images" / "model" / f"{j:04d}.png")
        _, meta_b = _png(ab_run / "images" / "baseline" / f"{j:04d}.png")
        assert (meta_m["prompt"], meta_m["seed"]) == (meta_b["prompt"], meta_b["seed"])
        assert meta_m["model"] == str(tiny_sd) and meta_b["model"] == str(tiny_sd_other)
        prompts.append(meta_m["prompt"])
        seeds.append(int(meta_m["seed"]))
    assert seeds == [10 + j for j in range(N_IMAGES)]  # item i, seed k: 10 + 2i + k
    metrics = json.loads((ab_run / "metrics.json").read_text())
    pixels = {}
    for label, folder in (("model", tiny_sd), ("baseline", tiny_sd_other)):
        out = Generator.from_folder(folder).sample(
            prompts, seeds, steps=2, guidance=3.0, batch_size=4
        )
        pixels[label] = out.pixels
        saved = np.stack(
            [_png(ab_run / "images" / label / f"{j:04d}.png")[0] for j in range(N_IMAGES)]
        )
        again = (out.pixels.permute(0, 2, 3, 1).numpy() * 255).round()
        assert np.abs(saved.astype(float) - again).max() <= 1
        fig = metrics["models"][label]["quality"]["test_brightness"]["brightness"]
        assert fig["value"] == pytest.approx(brightness(out.pixels).mean(), abs=1e-6)
        reward = metrics["models"][label]["alignment"]["reward_score"]["reward"]
        assert reward["value"] == pytest.approx(brightness(out.pixels).mean(), abs=1e-6)
        assert metrics["distributions"]["reward"][label] == pytest.approx(
            brightness(out.pixels), abs=1e-6
        )
    a, b = brightness(pixels["model"]), brightness(pixels["baseline"])
    expected = float(np.mean((a > b) + 0.5 * (a == b)))
    pref = metrics["comparison"]["preference"]
    assert pref["test_brighter"]["brighter"]["value"] == pytest.approx(expected)
    assert pref["reward_winrate"]["reward_winrate"]["value"] == pytest.approx(expected)


def test_the_same_model_twice_ties_every_pair(tiny_sd, tiny_oracle_dir, tmp_path):
    """Identical images: the simulated rater and the reward model both give exactly 0.5."""
    suite = write_suite(
        tmp_path / "s.yaml",
        prompt_sets={"test_prompts": {"n": 2}},
        metrics={"rater_winrate": {}, "reward_winrate": {}},
    )
    result = run_eval(
        tiny_sd,
        suite,
        tmp_path / "out",
        baseline=tiny_sd,
        oracle_path=tiny_oracle_dir,
        reward_path=tiny_oracle_dir,
        reward_loader="test_brightness",
    )
    for j in range(4):
        m = _png(tmp_path / "out" / "images" / "model" / f"{j:04d}.png")[0]
        b = _png(tmp_path / "out" / "images" / "baseline" / f"{j:04d}.png")[0]
        assert np.array_equal(m, b)
    pref = result["comparison"]["preference"]
    assert pref["rater_winrate"]["rater_winrate"]["value"] == pytest.approx(0.5)
    assert pref["reward_winrate"]["reward_winrate"]["value"] == 0.5


def test_without_a_baseline_win_rates_are_skipped_and_strict_fails(tiny_sd, tmp_path):
    suite = write_suite(
        tmp_path / "s.yaml",
        prompt_sets={"test_prompts": {"n": 1}},
        sampling={"steps": 1, "seeds_per_prompt": 1},
    )
    result = run_eval(tiny_sd, suite, tmp_path / "out")
    assert set(result["models"]) == {"model"}
    assert "needs --baseline" in result["comparison"]["preference"]["test_brighter"]["skipped"]
    row = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert "baseline_file" not in row and row["model_file"] == "images/model/0000.png"
    with pytest.raises(ArtalignError, match="--out .* is not empty; pass --overwrite"):
        run_eval(tiny_sd, suite, tmp_path / "out")
    with pytest.raises(ArtalignError, match="test_needs_clip.*--clip"):
        run_eval(tiny_sd, suite, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()  # nothing half written
    run_eval(tiny_sd, suite, tmp_path / "out", overwrite=True)


def test_bad_inputs_fail_before_sampling(tiny_sd, dummy_suite, tmp_path):
    with pytest.raises(ArtalignError, match="--model .*nope does not exist"):
        run_eval(tmp_path / "nope", dummy_suite, tmp_path / "o")
    with pytest.raises(ArtalignError, match="--baseline-lora needs --baseline"):
        run_eval(tiny_sd, dummy_suite, tmp_path / "o", baseline_lora=tiny_sd)
    with pytest.raises(ArtalignError, match="--oracle .*missing does not exist"):
        run_eval(tiny_sd, dummy_suite, tmp_path / "o", oracle_path=tmp_path / "missing")


# ----------------------------------------------------------------------------- suites
@pytest.mark.parametrize(
    "keys, message",
    [
        ({"metric": {}}, "unknown suite key\\(s\\) metric"),
        ({"metrics": {"nope_metric": {}}}, "metrics.nope_metric: unknown metric 'nope_metric'"),
        ({"prompt_sets": {"nope_set": {}}}, "unknown prompt set 'nope_set'"),
        ({"metrics": {"test_brightness": {"on": "elsewhere"}}}, "on: 'elsewhere' is not one"),
        ({"metrics": {"test_brightness": {"bogus": 1}}}, "test_brightness: bad params"),
        ({"prompt_sets": {"test_prompts": {"bogus": 1}}}, "test_prompts: bad params"),
        ({"sampling": {"stepz": 3}}, "unknown config key 'stepz'"),
        ({"sampling": {"steps": 0}}, "steps must be between 1"),
        ({"metrics": {}}, "names no metrics"),
        ({"metrics": ["a"]}, "'metrics' must be a mapping"),
    ],
)
def test_bad_suites_are_refused_with_the_key(tmp_path, keys, message):
    path = write_suite(tmp_path / "bad.yaml", **keys)
    with pytest.raises(ArtalignError, match=message):
        suite = load_suite(path)
        build_items(suite)


def test_suite_names_aliases_and_items(tmp_path):
    with pytest.raises(ArtalignError, match="unknown suite 'nope'; bundled: .*micro"):
        load_suite("nope")
    path = write_suite(
        tmp_path / "s.yaml",
        prompt_sets={
            "one": {"set": "test_prompts", "n": 1},
            "two": {"set": "test_prompts", "n": 2, "category": "x"},
        },
        metrics={"b1": {"metric": "test_brightness", "on": "two"}},
    )
    suite = load_suite(path)
    assert [(e.key, e.target, e.params) for e in suite.metrics] == [
        ("b1", "test_brightness", {"on": "two"})
    ]
    items = build_items(suite)
    assert [(i["prompt"], i["set"], i["category"]) for i in items] == [
        (TEST_PROMPTS[0], "one", "smoke"),
        (TEST_PROMPTS[0], "two", "x"),
        (TEST_PROMPTS[1], "two", "x"),
    ]
    assert suite.to_dict()["metrics"] == {"b1": {"metric": "test_brightness", "on": "two"}}


def test_bundled_suites_load():
    assert {"quick", "micro", "sd"} <= set(suite_names())
    for name in suite_names():
        suite = load_suite(name)
        assert suite.name == name and suite.metrics and suite.prompt_sets


# ----------------------------------------------------------------------------- preference
def _samples(values: list[float], label: str) -> Samples:
    images = torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    n = len(values)
    return Samples(
        images.clone(),
        [f"p{i}" for i in range(n)],
        list(range(n)),
        [{"prompt": f"p{i}", "set": "s"} for i in range(n)],
        label,
    )


def test_reward_metrics_on_hand_values(tmp_path):
    ctx = EvalContext(reward_path=tmp_path, reward_loader="test_brightness", n_boot=100)
    a = _samples([0.1, 0.2, 0.3, 0.4], "model")
    b = _samples([0.0, 0.2, 0.5, 0.1], "baseline")
    assert reward_score(ctx, a)["reward"].value == pytest.approx(0.25)
    with pytest.raises(ArtalignError, match="reward_winrate needs --baseline"):
        reward_winrate(ctx, a)
    ctx.other = b
    fig = reward_winrate(ctx, a)["reward_winrate"]
    assert fig.value == pytest.approx((1 + 0.5 + 0 + 1) / 4) and fig.n == 4
    ctx.other = _samples([0.0, 0.2, 0.5], "baseline")
    with pytest.raises(ArtalignError, match="not matched pairs"):
        reward_winrate(ctx, a)
    with pytest.raises(ArtalignError, match="no items of prompt set 'other'"):
        reward_score(ctx, a, on="other")


def test_micro_suite_runs_every_metric_end_to_end(
    tiny_sd, tiny_sd_other, micro_clip, tiny_oracle_dir, micro_data, tmp_path
):
    """The bundled smoke suite with real (tiny, random) instruments: no metric is skipped."""
    result = run_eval(
        tiny_sd,
        "micro",
        tmp_path / "out",
        baseline=tiny_sd_other,
        strict=True,
        oracle_path=tiny_oracle_dir,
        clip_path=micro_clip,
        reference_path=micro_data,
        reward_path=tiny_oracle_dir,
        reward_loader="test_brightness",
        n_boot=100,
    )
    suite = load_suite("micro")
    n_images = len(build_items(suite)) * suite.sampling.seeds_per_prompt
    for label in ("model", "baseline"):
        got = {key for by_metric in result["models"][label].values() for key in by_metric}
        assert got == {e.key for e in suite.metrics if e.key != "rater_winrate"}
        assert result["models"][label]["efficiency"]["efficiency"]["images_per_s"]["n"] == n_images
    assert 0 <= result["comparison"]["preference"]["rater_winrate"]["rater_winrate"]["value"] <= 1
