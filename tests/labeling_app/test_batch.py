"""Batch creation: procedural and tiny-SD images, seeds, provenance, tasks, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from base_models.errors import ArtalignError
from labeling_app.batch import (
    BatchPlan,
    GeneratorSource,
    ProceduralSource,
    make_batch,
    parse_kinds,
    read_prompt_file,
)
from labeling_app.batch_scenes import scene_for_prompt
from labeling_app.store import Store

PROMPTS = ["a large red circle on a white background", "two shapes: a blue star and a cyan heart"]


def test_procedural_batch_tasks_seeds_and_provenance(tmp_path):
    store = Store(tmp_path / "b.db", create=True)
    plan = BatchPlan(k=4, kinds=("pair", "rank"), overlap=2, seed=10)
    bid = make_batch(store, PROMPTS, ProceduralSource(size=16), plan, "p")
    tasks = store.tasks(bid)
    pairs = [t for t in tasks if t.kind == "pair"]
    ranks = [t for t in tasks if t.kind == "rank"]
    assert len(pairs) == 2 * 6 and len(ranks) == 2 and all(t.overlap == 2 for t in tasks)
    assert all(len(t.image_ids) == 4 for t in ranks)
    images = store.images([i for t in tasks for i in t.image_ids])
    for t in tasks:
        assert all(images[i].prompt_id == t.prompt_id for i in t.image_ids)
    seeds = sorted(r.seed for r in images.values())
    assert seeds == list(range(10, 18))  # image j of prompt i: seed + i*k + j
    lefts = {t.image_ids[0] < t.image_ids[1] for t in pairs}
    assert lefts == {True, False}  # display order is shuffled
    rec = images[pairs[0].image_ids[0]]
    png = Image.open(rec.path)
    assert png.text["model"] == "procedural" and int(png.text["seed"]) == rec.seed
    assert png.text["prompt"] in PROMPTS and json.loads(png.text["settings"])["size"] == 16
    assert store.batch("p").settings["k"] == 4
    with pytest.raises(ArtalignError, match="exists"):
        make_batch(store, PROMPTS, ProceduralSource(size=16), plan, "p")


def test_same_seed_same_images(tmp_path):
    digests = []
    for n in range(2):
        store = Store(tmp_path / f"{n}.db", create=True)
        bid = make_batch(store, PROMPTS, ProceduralSource(size=16), BatchPlan(k=3), "x")
        ids = sorted({i for t in store.tasks(bid) for i in t.image_ids})
        digests.append([r.sha256 for _, r in sorted(store.images(ids).items())])
    assert digests[0] == digests[1]


def test_pairs_per_prompt_and_gold_pairs(tmp_path):
    store = Store(tmp_path / "b.db", create=True)
    plan = BatchPlan(k=4, kinds=("pair",), pairs_per_prompt=2, gold_pairs=3)
    bid = make_batch(store, PROMPTS, ProceduralSource(size=16), plan, "g")
    tasks = store.tasks(bid)
    gold = [t for t in tasks if t.gold]
    assert len(tasks) - len(gold) == 2 * 2 and len(gold) == 3
    for t in gold:
        images = store.images(t.image_ids)
        good = t.image_ids[0] if t.gold["choice"] == "left" else t.image_ids[1]
        bad = next(i for i in t.image_ids if i != good)
        assert images[good].settings["mistake"] is None and images[bad].settings["mistake"]


def test_scene_for_prompt_honours_the_prompt():
    import numpy as np

    text = "a large red circle in the top left and a small blue star on a black background"
    for seed in range(5):
        scene, jitter, mistake = scene_for_prompt(text, np.random.default_rng(seed))
        assert mistake is None and len(jitter) == 2 and scene.background == "black"
        circle = next(o for o in scene.objects if o.shape == "circle")
        assert (circle.colour, circle.size, circle.position) == ("red", "large", "top left")
    _, _, mistake = scene_for_prompt(text, np.random.default_rng(0), mistake=True)
    assert mistake


def test_prompt_files_and_bad_plans(tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\n\n  a blue star  \n")
    assert read_prompt_file(tmp_path / "p.txt") == ["a red circle", "a blue star"]
    (tmp_path / "p.jsonl").write_text('{"text": "a red circle"}\n{"text": "a cat"}\n')
    assert read_prompt_file(tmp_path / "p.jsonl") == ["a red circle", "a cat"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ArtalignError, match="no prompts"):
        read_prompt_file(tmp_path / "empty.txt")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(ArtalignError, match="text"):
        read_prompt_file(tmp_path / "bad.jsonl")
    with pytest.raises(ArtalignError, match="does not exist"):
        read_prompt_file(tmp_path / "nope.txt")
    with pytest.raises(ArtalignError, match="pair and/or rank"):
        parse_kinds("pair,triple")
    store = Store(tmp_path / "b.db", create=True)
    for plan in (BatchPlan(k=1), BatchPlan(overlap=0), BatchPlan(k=3, pairs_per_prompt=4)):
        with pytest.raises(ArtalignError):
            make_batch(store, PROMPTS, ProceduralSource(size=16), plan, "bad")
    assert store.batches() == []


def test_generator_batch_with_tiny_sd(tmp_path, tiny_sd):
    store = Store(tmp_path / "g.db", create=True)
    source = GeneratorSource(str(tiny_sd), steps=2, guidance=2.0, batch_size=4)
    bid = make_batch(store, PROMPTS, source, BatchPlan(k=2, kinds=("pair", "rank"), seed=5), "sd")
    tasks = store.tasks(bid)
    assert [t.kind for t in tasks] == ["pair", "rank", "pair", "rank"]
    images = store.images([i for t in tasks for i in t.image_ids])
    assert sorted(r.seed for r in images.values()) == [5, 6, 7, 8]
    rec = next(iter(images.values()))
    assert rec.model == str(tiny_sd) and rec.settings["steps"] == 2 and rec.width == 32
    png = Image.open(io.BytesIO(rec.path.read_bytes()))
    assert json.loads(png.text["settings"])["guidance"] == 2.0 and png.text["seed"] == str(rec.seed)
    # the stored image is what the generator makes for that prompt and seed: regenerated alone
    # rather than in a batch of 4, CPU kernels may round a pixel by one level, never more, while
    # another seed differs by far more
    prompt = png.text["prompt"]
    again, other = (
        np.asarray(source._gen.sample([prompt], [s], steps=2, guidance=2.0).images[0], dtype=int)
        for s in (rec.seed, rec.seed + 100)
    )
    stored = np.asarray(png.convert("RGB"), dtype=int)
    assert np.abs(again - stored).max() <= 1
    assert np.abs(other - stored).mean() > 10 * np.abs(again - stored).mean() + 1
