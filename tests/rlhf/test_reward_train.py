"""Training: a toy taste is learnt, parameters change, the out folder, early stopping, bad input."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from base_models.config import load_config
from base_models.errors import ArtalignError
from rlhf.reward.config import RewardConfig
from rlhf.reward.data import split_by_prompt
from rlhf.reward.loaders import load_from_store
from rlhf.reward.model import build_reward_model, load_reward_model
from rlhf.reward.train import train_reward

OUT_FILES = (
    "reward.safetensors",
    "reward_config.json",
    "train_config.yaml",
    "split.json",
    "train_log.jsonl",
    "metrics.json",
)


def micro_cfg(backbone, **overrides) -> RewardConfig:
    return load_config(RewardConfig, "micro", overrides={"backbone": str(backbone), **overrides})


@pytest.fixture(scope="module")
def data(pref_store):
    return load_from_store(pref_store.db)


def test_toy_taste_is_learnt_and_saved(micro_clip, data, tmp_path):
    """Raters who like light backgrounds: the head learns it from frozen CLIP features."""
    cfg = micro_cfg(micro_clip, head="mlp", epochs=20, lr=3e-3, batch_size=32, mlp_hidden=[64])
    out = tmp_path / "rm"
    model = train_reward(cfg, data, out)
    for name in OUT_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.75  # chance is 0.5; the raters' ceiling about 0.88
    assert metrics["train_accuracy"] >= 0.75
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert (
        [r["epoch"] for r in log] == list(range(1, 21)) == [r["epoch"] for r in metrics["history"]]
    )
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    split = json.loads((out / "split.json").read_text())
    _, val, test = split_by_prompt(data, cfg.val_frac, cfg.test_frac, cfg.seed)
    assert split["test_prompts"] == test.prompts() and split["val_prompts"] == val.prompts()
    config = json.loads((out / "reward_config.json").read_text())
    assert config["training"]["head"] == "mlp" and config["data"]["kind"] == "store"
    assert config["data"]["split"] == {"val_frac": 0.1, "test_frac": 0.2, "seed": 0}
    # the saved model scores exactly as the returned one
    images = [data.load_image(i) for i in data.used_images()[:6]]
    torch.testing.assert_close(
        load_reward_model(out).score(images, "a small red circle"),
        model.score(images, "a small red circle"),
    )


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_parameters_change(micro_clip, data, tmp_path, mode):
    # no validation split: the trained epoch is kept (not the untrained epoch 0)
    cfg = micro_cfg(micro_clip, mode=mode, epochs=1, train_fraction=0.1, loss="pl", val_frac=0)
    torch.manual_seed(cfg.seed)
    init = {
        k: v.clone() for k, v in build_reward_model(micro_clip, mode=mode).trained_state().items()
    }
    train_reward(cfg, data, tmp_path / mode)
    after = load_file(str(tmp_path / mode / "reward.safetensors"))
    assert set(after) == set(init)
    changed = {k for k in after if not torch.equal(after[k], init[k])}
    assert "head.image_proj.weight" in changed and "head.logit_scale" in changed
    if mode == "lora":
        assert any("lora_B" in k for k in changed)  # B starts at zero: it moved
    if mode == "full":
        assert "backbone.visual.conv1.weight" in changed
        assert "backbone.token_embedding.weight" in changed


def test_scale_calibration_fits_the_training_pairs(micro_clip, data):
    from rlhf.reward.train import Features, Units, calibrate_scale

    cfg = micro_cfg(micro_clip)
    model = build_reward_model(micro_clip, head="hybrid")
    prompts = data.prompts()
    units = Units(data, "bt", {p: i for i, p in enumerate(prompts)})
    feats = Features(model, data, prompts, cfg, contextlib.nullcontext)

    @torch.no_grad()
    def loss():
        scores = feats.scores(units.prompt, units.images)
        return float(units.loss_of(scores, torch.arange(len(units))))

    model.head.logit_scale.data.fill_(math.log(50.0))  # far from the fit
    start = loss()
    before, after = calibrate_scale(model, feats, units, 64)
    assert before == pytest.approx(50.0) and after != pytest.approx(50.0)
    best = loss()
    assert best < start
    for scale in (0.8 * after, 1.25 * after):  # a minimum along the scale
        model.head.logit_scale.data.fill_(math.log(scale))
        assert loss() >= best - 1e-6


def test_early_stopping_and_train_fraction(micro_clip, data, tmp_path):
    cfg = micro_cfg(micro_clip, epochs=10, patience=2, lr=1e-12, train_fraction=0.5)
    train_reward(cfg, data, tmp_path / "rm")
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    # nothing beats the untrained model (epoch 0): stop after `patience` epochs, keep epoch 0
    assert metrics["epochs_run"] == 2 and metrics["stopped_early"] and metrics["best_epoch"] == 0
    full_train = split_by_prompt(data, 0.1, 0.2, 0)[0]
    assert metrics["data"]["train"]["pairs"] + metrics["data"]["train"]["rankings"] == round(
        len(full_train) / 2
    )


def test_out_folder_rules(micro_clip, data, tmp_path):
    cfg = micro_cfg(micro_clip, epochs=1, train_fraction=0.2)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ArtalignError, match="holds no reward model"):
        train_reward(cfg, data, busy)
    assert (busy / "notes.txt").read_text() == "mine"
    train_reward(cfg, data, tmp_path / "rm")
    train_reward(cfg, data, tmp_path / "rm")  # an old reward model is replaced
    assert sorted(p.name for p in (tmp_path / "rm").iterdir()) == sorted(OUT_FILES)


def test_bad_input_writes_nothing(micro_clip, pref_store, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(pref_store.db, db)
    shutil.copytree(f"{pref_store.db}.images", f"{db}.images")
    broken = load_from_store(db)
    victim = broken.images[broken.pairs[0].image_a]
    Path(victim).write_bytes(b"\x89PNG broken")
    with pytest.raises(ArtalignError, match=f"image {victim}.* cannot be loaded"):
        train_reward(micro_cfg(micro_clip), broken, tmp_path / "rm")
    assert not (tmp_path / "rm").exists()
    with pytest.raises(ArtalignError, match="head='linear' is unknown"):
        train_reward(micro_cfg(micro_clip, head="linear"), broken, tmp_path / "rm")
    ties = broken.with_judgments(
        [p.__class__(p.prompt, p.image_a, p.image_b, 0.5) for p in broken.pairs], []
    )
    with pytest.raises(ArtalignError, match="is a tie"):
        train_reward(micro_cfg(micro_clip), ties, tmp_path / "rm")
    with pytest.raises(ArtalignError, match="no usable judgments"):
        train_reward(micro_cfg(micro_clip), broken.with_judgments([], []), tmp_path / "rm")
    assert not (tmp_path / "rm").exists()
