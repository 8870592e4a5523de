"""The attribute oracle: training, save/load, resume, reading, fidelity, prompt parsing, scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from base_models.config import load_config
from base_models.errors import ArtalignError
from base_models.oracle import (
    AttributeOracle,
    OracleConfig,
    OracleReading,
    attribute_accuracy,
    best_assignment,
    fidelity,
    parse_prompt,
    read_images,
    score_oracle,
    train_oracle,
)
from base_models.oracle import train as train_module
from base_models.oracle.train import augment
from base_models.world.attributes import ObjectSpec, SceneSpec
from base_models.world.captions import canonical_caption, caption
from base_models.world.dataset import DataConfig, make_dataset
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler


def micro(**overrides) -> OracleConfig:
    return load_config(OracleConfig, "micro", overrides=overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle")
    metrics = train_oracle(micro(), out)
    return out, metrics


def _obj(shape, colour, size="small", row=0, col=0):
    return {"shape": shape, "colour": colour, "size": size, "row": row, "col": col}


def _record(objects, background="white", style="flat"):
    return {"objects": objects, "count": len(objects), "background": background, "style": style}


# ----------------------------------------------------------------------------- training


def test_micro_training_writes_oracle_and_changes_parameters(trained):
    out, metrics = trained
    for name in ("model.safetensors", "config.json", "train_config.yaml", "metrics.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 0.0 <= metrics["val_mean_attribute_accuracy"] <= 1.0
    cfg = micro()
    torch.manual_seed(cfg.seed)  # train_oracle initialises the network from the same seed
    initial = AttributeOracle(cfg.size, cfg.channels, cfg.hidden).state_dict()
    final = load_file(str(out / "model.safetensors"))
    changed = [k for k, v in final.items() if "weight" in k and not torch.equal(v, initial[k])]
    assert len(changed) >= 10


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = AttributeOracle(channels=(4, 8, 8), hidden=8).eval()
    x = torch.rand(3, 3, 32, 32)
    model.save(tmp_path / "o")
    loaded = AttributeOracle.load(tmp_path / "o")
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["vocab"]["shapes"][-1] == "warning" and cfg["channels"] == [4, 8, 8]


def test_resume_continues_from_the_checkpoint(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_oracle(micro(), straight)

    class Stop(Exception):
        pass

    original = train_module.save_checkpoint

    def save_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        raise Stop  # simulate a crash right after the first epoch's checkpoint

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(train_module, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        train_oracle(micro(), resumed)
    state = json.loads((resumed / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 3  # 96 images / batch 32
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    metrics = train_oracle(micro(), resumed, resume=True)
    state = json.loads((resumed / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2 and metrics["steps"] == 6
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    for key in a:  # same data, same RNG streams, same optimiser state: the same weights
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_different_config_or_no_checkpoint(tmp_path, trained):
    out, _ = trained
    with pytest.raises(ArtalignError, match="differs from the checkpoint"):
        train_oracle(micro(seed=3), out, resume=True)
    with pytest.raises(ArtalignError, match="no checkpoint"):
        train_oracle(micro(), tmp_path / "empty", resume=True)


def test_augment_keeps_range_and_shape():
    cfg = micro(aug_prob=1.0)
    x = torch.rand(6, 3, 32, 32)
    y = augment(x, cfg, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert not torch.equal(x, y)
    none = augment(x, micro(aug_prob=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(none, x)


# ----------------------------------------------------------------------------- reading


def test_read_images_accepts_pil_and_tensors_of_any_size(trained):
    out, _ = trained
    oracle = AttributeOracle.load(out)
    sampler = SceneSampler(split="all")
    scenes = [sampler.sample(np.random.default_rng(i)) for i in range(5)]
    images = [render_scene(scene, 32, jitter) for scene, jitter in scenes]
    from_pil = read_images(oracle, images, batch_size=2)
    arr = np.stack([np.asarray(im) for im in images])
    tensor = torch.from_numpy(arr).permute(0, 3, 1, 2)  # (5, 3, 32, 32) uint8
    from_tensor = read_images(oracle, tensor.float() / 255)
    assert [r.to_record() for r in from_pil] == [r.to_record() for r in read_images(oracle, tensor)]
    assert [r.style for r in from_pil] == [r.style for r in from_tensor]
    big = read_images(oracle, [im.resize((64, 64)) for im in images])
    assert len(big) == 5 and all(isinstance(r, OracleReading) for r in big)
    assert all(len(r.presence) == 9 and r.count == len(r.objects) for r in from_pil)
    assert read_images(oracle, tensor[0])[0].to_record() == from_pil[0].to_record()


def test_attribute_accuracy_definitions():
    truth = _record([_obj("star", "red", row=0, col=0), _obj("circle", "blue", row=1, col=1)])
    wrong = _record(
        [_obj("star", "red", row=0, col=0), _obj("square", "blue", row=2, col=2)], style="dotted"
    )
    m = attribute_accuracy([truth, wrong], [truth, truth])
    assert m["shape_accuracy"] == 0.75  # the circle was not read in its cell
    assert m["colour_accuracy"] == 0.75 and m["size_accuracy"] == 0.75
    assert m["position_accuracy"] == pytest.approx(3 / 5)  # (2 + 1) / (2 + 3)
    assert m["count_accuracy"] == 1.0 and m["style_accuracy"] == 0.5
    assert m["exact_set_accuracy"] == 0.5 and m["exact_record_accuracy"] == 0.5


# ----------------------------------------------------------------------------- fidelity


def _reading(objects, background="white", style="flat"):
    return OracleReading(
        objects=[{**o, "position": ""} for o in objects], background=background, style=style
    )


def test_fidelity_hand_computed_cases():
    read = _reading([_obj("star", "red", "large", 0, 0), _obj("circle", "blue", "small", 1, 1)])
    # partial prompt: a red star, white background -> 3 attributes, all right
    assert fidelity(
        read, {"objects": [{"colour": "red", "shape": "star"}], "background": "white"}
    ) == (1.0, True)
    # wrong colour: 1 of 2 object attributes
    assert fidelity(read, {"objects": [{"colour": "green", "shape": "star"}]}) == (0.5, False)
    # missing object: the blue circle matches, the yellow heart finds nothing -> 2 of 4
    heart, circle = {"colour": "yellow", "shape": "heart"}, {"colour": "blue", "shape": "circle"}
    req = {"objects": [heart, circle]}
    assert fidelity(read, req) == (0.5, False)
    # extra objects cost only through count: 2 objects read, 1 asked for
    req = {"objects": [{"shape": "star"}], "count": 1}
    assert fidelity(read, req) == (0.5, False)
    assert fidelity(read, {"count": 2}) == (1.0, True)
    # position by name and by row/col; size; style
    req = {
        "objects": [
            {"shape": "star", "size": "large", "position": "top left"},
            {"shape": "circle", "row": 1, "col": 1},
        ],
        "style": "striped",
    }
    assert fidelity(read, req) == pytest.approx((5 / 6, False))
    # nothing required is satisfied; an object with no keys asks only that one exists
    assert fidelity(read, {}) == (1.0, True)
    assert fidelity(_reading([]), {"objects": [{}]}) == (0.0, False)


def test_fidelity_uses_the_optimal_assignment():
    # Greedy would give the red star request to the red circle (colour) or the star; optimal
    # pairs red-star with the red star and blue-circle with the blue circle.
    read = _reading(
        [
            _obj("circle", "red", row=0, col=0),
            _obj("star", "red", row=0, col=1),
            _obj("circle", "blue", row=0, col=2),
        ]
    )
    req = {
        "objects": [
            {"colour": "red", "shape": "circle"},
            {"colour": "red", "shape": "star"},
            {"colour": "blue", "shape": "circle"},
        ]
    }
    assert fidelity(read, req) == (1.0, True)
    assert best_assignment([[2, 1], [2, 0]]) == (3, [1, 0])
    assert best_assignment([[1], [1]]) in ((1, [0, None]), (1, [None, 0]))


def test_fidelity_full_record_and_bad_values():
    scene = SceneSpec([ObjectSpec("star", "red", "large", 0, 0)], "black", "dotted")
    record = scene.to_record() | {"text": "ignored", "jitter": [[0, 0]]}
    assert fidelity(record, record) == (1.0, True)
    assert fidelity(OracleReading([], "black", "dotted"), record)[0] == pytest.approx(2 / 7)
    with pytest.raises(ArtalignError, match="colour"):
        fidelity(record, {"objects": [{"colour": "magenta"}]})
    with pytest.raises(ArtalignError, match="position"):
        fidelity(record, {"objects": [{"position": "upstairs"}]})


def test_parse_prompt_reads_captions_with_synonyms():
    text = "a big violet disc in the top left and a tiny red star on a grey backdrop, shaded style"
    assert parse_prompt(text) == {
        "objects": [
            {"shape": "circle", "size": "large", "colour": "purple", "position": "top left"},
            {"shape": "star", "size": "small", "colour": "red"},
        ],
        "background": "gray",
        "style": "gradient",
        "count": 2,
    }
    req = parse_prompt(
        "three shapes in polka-dot style: a medium-sized turquoise plus sign in the "
        "center, a hazard sign and a rhombus, on sand-coloured"
    )
    assert req["count"] == 3 and req["style"] == "dotted" and req["background"] == "beige"
    assert req["objects"] == [
        {"shape": "cross", "size": "medium", "colour": "cyan", "position": "center"},
        {"shape": "warning"},
        {"shape": "diamond"},
    ]
    assert parse_prompt("an outline picture of an orange box in the bottom center on black") == {
        "objects": [{"shape": "square", "colour": "orange", "position": "bottom center"}],
        "style": "outlined",
        "background": "black",
        "count": 1,
    }
    assert parse_prompt("a red star", exact_count=False) == {
        "objects": [{"shape": "star", "colour": "red"}]
    }
    assert parse_prompt("a photo of nothing in particular") == {}


def test_parse_prompt_round_trips_every_caption_template():
    sampler = SceneSampler(split="all", unsafe_share=0.3)
    for i in range(300):
        rng = np.random.default_rng(i)
        scene, _ = sampler.sample(rng)
        truth = scene.to_record()
        for text in (caption(scene, rng), canonical_caption(scene)):
            req = parse_prompt(text)
            assert fidelity(truth, req) == (1.0, True), text
            assert len(req["objects"]) == scene.count and req["count"] == scene.count, text
        wrong = {**truth, "background": "black" if scene.background != "black" else "white"}
        assert fidelity(wrong, parse_prompt(canonical_caption(scene)))[1] is False


# ----------------------------------------------------------------------------- scoring, errors


def test_score_oracle_writes_metrics(trained, tmp_path):
    out, _ = trained
    data = make_dataset(DataConfig(n=12, seed=3, split="all"), tmp_path / "data")
    metrics = score_oracle(out, data, tmp_path / "score")
    saved = json.loads((tmp_path / "score" / "metrics.json").read_text())
    assert saved == metrics and metrics["n"] == 12
    for key in ("shape", "colour", "size", "position", "count", "background", "style"):
        assert 0.0 <= metrics[f"{key}_accuracy"] <= 1.0
    for key in ("mean_attribute_accuracy", "exact_set_accuracy", "exact_record_accuracy", "data"):
        assert key in metrics


def test_bad_oracle_folders_raise_clear_errors(tmp_path):
    with pytest.raises(ArtalignError, match="does not exist"):
        AttributeOracle.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtalignError, match="no config.json"):
        AttributeOracle.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ArtalignError, match="not valid JSON"):
        AttributeOracle.load(bad)
    AttributeOracle(channels=(4, 8, 8), hidden=8).save(bad)
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtalignError, match="corrupt"):
        AttributeOracle.load(bad)
    with pytest.raises(ArtalignError, match="does not exist"):
        score_oracle(tmp_path / "nowhere", tmp_path, tmp_path / "out")


def test_bad_config_values_are_named():
    with pytest.raises(ArtalignError, match="mixed_precision"):
        micro(mixed_precision="fp8").validate()
    with pytest.raises(ArtalignError, match="channels"):
        micro(channels=[4, 8]).validate()
