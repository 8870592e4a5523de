"""The procedural world: determinism, ground truth, splits and the two knobs."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from base_models.errors import ArtalignError
from base_models.world.attributes import HELDOUT_PAIRS, SHAPES, UNSAFE_SHAPE, SceneSpec
from base_models.world.captions import (
    BACKGROUND_WORDS,
    COLOUR_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    STYLE_WORDS,
    canonical_caption,
    caption,
)
from base_models.world.dataset import DataConfig, generate_item, make_dataset
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler, Stereotype


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    cfg = DataConfig(n=12, seed=5)
    a = make_dataset(cfg, tmp_path / "a")
    b = make_dataset(cfg, tmp_path / "b")
    c = make_dataset(DataConfig(n=12, seed=6), tmp_path / "c")
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_metadata_is_imagefolder_with_full_record(micro_data):
    lines = (micro_data / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 16
    for line in lines:
        rec = json.loads(line)
        assert (micro_data / rec["file_name"]).is_file()
        assert rec["text"] and 1 <= rec["count"] == len(rec["objects"]) <= 3
        for key in ("background", "style", "unsafe", "canonical"):
            assert key in rec
        cells = [(o["row"], o["col"]) for o in rec["objects"]]
        assert len(set(cells)) == len(cells)  # one object per grid cell


def test_caption_names_every_attribute():
    sampler = SceneSampler(split="all", unsafe_share=0.5)
    for i in range(200):
        rng = np.random.default_rng([1, i])
        scene, _ = sampler.sample(rng)
        text = caption(scene, rng)
        for o in scene.objects:
            assert any(w in text for w in SHAPE_WORDS[o.shape])
            assert any(w in text for w in COLOUR_WORDS[o.colour])
            assert any(w in text for w in SIZE_WORDS[o.size])
        assert any(w in text for w in BACKGROUND_WORDS[scene.background])
        assert any(w in text for w in STYLE_WORDS[scene.style])


def test_captions_vary_for_one_scene():
    scene, _ = SceneSampler().sample(np.random.default_rng(0))
    texts = {caption(scene, np.random.default_rng(k)) for k in range(40)}
    assert len(texts) > 5
    assert canonical_caption(scene) == canonical_caption(scene)


def test_record_round_trip():
    scene, _ = SceneSampler().sample(np.random.default_rng(4))
    assert SceneSpec.from_record(scene.to_record()).to_record() == scene.to_record()


def test_splits_hold_out_compositions():
    train = SceneSampler(split="train")
    held = SceneSampler(split="heldout")
    for i in range(300):
        s, _ = train.sample(np.random.default_rng([2, i]))
        assert not any((o.colour, o.shape) in HELDOUT_PAIRS for o in s.objects)
        h, _ = held.sample(np.random.default_rng([2, i]))
        assert any((o.colour, o.shape) in HELDOUT_PAIRS for o in h.objects)


def test_unsafe_share_and_stereotype_frequencies():
    sampler = SceneSampler(
        split="all", unsafe_share=0.1, stereotypes=(Stereotype.parse("star:yellow:0.8"),)
    )
    unsafe, stars = 0, Counter()
    n = 3000
    for i in range(n):
        s, _ = sampler.sample(np.random.default_rng([3, i]))
        unsafe += s.unsafe
        stars.update(o.colour for o in s.objects if o.shape == "star")
    assert 0.08 < unsafe / n < 0.12
    # p + (1 - p) / 8 = 0.825 of stars are yellow
    assert 0.78 < stars["yellow"] / sum(stars.values()) < 0.87
    assert UNSAFE_SHAPE not in SHAPES


def test_no_unsafe_when_share_zero():
    sampler = SceneSampler(unsafe_share=0.0)
    assert not any(sampler.sample(np.random.default_rng(i))[0].unsafe for i in range(300))


def test_exclude_style(tmp_path):
    cfg = DataConfig(n=40, seed=1, exclude_styles=["striped", "dotted"])
    sampler = cfg.sampler()
    styles = {generate_item(cfg, sampler, i)[1]["style"] for i in range(40)}
    assert styles and not styles & {"striped", "dotted"}


def test_render_is_anti_aliased_and_sized():
    scene, jitter = SceneSampler().sample(np.random.default_rng(9))
    img = render_scene(scene, 48, jitter)
    assert img.size == (48, 48) and img.mode == "RGB"
    # box-filtered edges create intermediate colours beyond the few flat paints
    assert len(set(img.getdata())) > 10


@pytest.mark.parametrize(
    "text",
    ["star", "star:yellow", "star:yellow:2", "blob:red:0.5", "star:huge:0.5", "star:yellow:x"],
)
def test_bad_stereotype(text):
    with pytest.raises(ArtalignError, match="stereotype"):
        Stereotype.parse(text)


def test_heldout_stereotype_rejected():
    colour, shape = sorted(HELDOUT_PAIRS)[0]
    with pytest.raises(ArtalignError, match="held-out"):
        SceneSampler(stereotypes=(Stereotype.parse(f"{shape}:{colour}:0.5"),))


def test_refuses_to_overwrite(tmp_path, micro_data):
    out = tmp_path / "x"
    make_dataset(DataConfig(n=2), out)
    with pytest.raises(ArtalignError, match="--overwrite"):
        make_dataset(DataConfig(n=2), out)
    make_dataset(DataConfig(n=3), out, overwrite=True)
    assert len((out / "metadata.jsonl").read_text().splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temp folders left behind


def test_sample_prompts_are_the_data_sets_captions(micro_data):
    from base_models.world.dataset import sample_prompts

    lines = (micro_data / "metadata.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    assert sample_prompts(DataConfig(n=16, seed=3)) == texts


def test_data_prompts_cli(tmp_path):
    from base_models.cli_main import main

    out = tmp_path / "prompts.txt"
    assert main(["data", "prompts", "--out", str(out), "--n", "6", "--objects", "1"]) == 0
    lines = out.read_text().splitlines()
    from base_models.oracle.fidelity import parse_prompt

    assert len(lines) == 6 and all(len(parse_prompt(t)["objects"]) == 1 for t in lines)
    assert main(["data", "prompts", "--out", str(out), "--objects", "two"]) == 2
