"""Simulated raters against a real store: judgments through the store API, answers that follow
the hidden utility, spammers flagged by the agreement report, and the two CLI commands."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from base_models.cli_main import main
from base_models.oracle import AttributeOracle, OracleReading
from base_models.raters import RaterProfile, utility
from base_models.world.attributes import SceneSpec
from base_models.world.captions import canonical_caption
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler
from labeling_app import simulate as simulate_module
from labeling_app.agreement import agreement_report
from labeling_app.simulate import default_metrics_path, rater_names, simulate
from labeling_app.store import SYSTEM, Store


def _pixels_key(image) -> str:
    return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


def _truth(scene: SceneSpec) -> OracleReading:
    objects = [{**o, "confidence": 1.0} for o in scene.to_record()["objects"]]
    return OracleReading(objects=objects, background=scene.background, style=scene.style)


@pytest.fixture
def world(tmp_path):
    """A store with one batch: 24 pair tasks and 8 three-way rank tasks, overlap 4.

    Each prompt is the canonical caption of a scene; its images are that scene, the scene in
    another style, and an unrelated scene, in a random display order. `truth` maps pixels to the
    ground-truth reading, for a perfect stand-in oracle.
    """
    rng = np.random.default_rng(0)
    sampler = SceneSampler(unsafe_share=0.0)
    store = Store(tmp_path / "labels.db", create=True)
    batch = store.create_batch("b1", {"k": 3})
    truth: dict[str, OracleReading] = {}

    def add(scene: SceneSpec, prompt_id: int) -> int:
        image = render_scene(scene, size=32, supersample=2)
        truth[_pixels_key(image)] = _truth(scene)
        return store.add_image(prompt_id, image, seed=0, model="procedural")

    for t in range(32):
        scene, _ = sampler.sample(rng)
        prompt_id = store.add_prompt(canonical_caption(scene))
        other_style = "striped" if scene.style != "striped" else "dotted"
        restyled = SceneSpec(scene.objects, scene.background, other_style)
        unrelated, _ = sampler.sample(rng)
        ids = [add(scene, prompt_id), add(restyled, prompt_id), add(unrelated, prompt_id)]
        ids = [ids[i] for i in rng.permutation(3)]
        if t < 24:
            store.add_task(batch, "pair", prompt_id, ids[:2], overlap=4)
        else:
            store.add_task(batch, "rank", prompt_id, ids, overlap=4)
    yield store, batch, truth
    store.close()


@pytest.fixture
def tiny_oracle():
    torch.manual_seed(0)
    return AttributeOracle(channels=(4, 8, 8), hidden=8).eval()


def _perfect_reader(monkeypatch, truth):
    """Replace the oracle's reading with the ground truth of each rendered image."""
    monkeypatch.setattr(
        simulate_module,
        "read_images",
        lambda oracle, images: [truth[_pixels_key(im)] for im in images],
    )


def test_simulate_writes_judgments_through_the_store(world, tiny_oracle):
    store, batch, _ = world
    profile = RaterProfile(name="t", n_raters=3, spammer_share=0.34).validate()
    metrics = simulate(store, profile, tiny_oracle, 5, batch_id=batch, seed=1)
    rows = store.judgments(SYSTEM, batch_id=batch)
    assert metrics["n_written"] == len(rows) == 5 and not metrics["no_work_left"]
    names = {r.id: r.name for r in store.raters()}
    assert {names[j.rater_id] for j in rows} <= set(rater_names(profile))
    assert sorted(r["judgments"] for r in metrics["raters"]) == [1, 2, 2]  # raters take turns
    assert len(metrics["spammer_ids"]) == 1
    path = default_metrics_path(store, profile)
    saved = json.loads(path.read_text())
    assert saved["n_written"] == 5
    assert saved["ceiling"]["overall"]["n_tasks"] == len({j.task_id for j in rows})
    assert path.parent == store.db_path.parent

    # a second run reuses the accounts and the spammer, and stops when the work runs out
    again = simulate(store, profile, tiny_oracle, 10_000, batch_id=batch, seed=1, out=path.parent)
    assert again["spammer_ids"] == metrics["spammer_ids"]
    assert [r["id"] for r in again["raters"]] == [r["id"] for r in metrics["raters"]]
    assert again["no_work_left"] and again["metrics_path"].endswith("metrics.json")
    rows = store.judgments(SYSTEM, batch_id=batch)
    assert len(rows) == 32 * 3  # 3 raters, each judges every task once (overlap 4)
    per_task_rater = Counter((j.task_id, j.rater_id) for j in rows)
    assert max(per_task_rater.values()) == 1


def test_answers_follow_the_hidden_utility(world, monkeypatch):
    store, batch, truth = world
    _perfect_reader(monkeypatch, truth)
    profile = RaterProfile(name="sharp", n_raters=2, temperature=1e-4, style={"striped": 0.01})
    profile.validate()
    metrics = simulate(store, profile, None, 1000, batch_id=batch)
    checked = 0
    tasks = {t.task_id: t for t in store.tasks(batch)}
    for j in store.judgments(SYSTEM, batch_id=batch):
        task = tasks[j.task_id]
        u = [
            utility(truth[_pixels_key(Image.open(path))], task.prompt, profile)
            for path in task.image_paths
        ]
        ranks = j.answer["ranks"] if task.kind == "rank" else None
        if task.kind == "pair":
            ranks = {"left": [1, 2], "right": [2, 1]}[j.answer["choice"]]
        for a, b in itertools.permutations(range(len(u)), 2):
            if u[a] > u[b]:  # the better image always wins (equal utilities: a coin)
                assert ranks[a] < ranks[b], (task, u, ranks)
            checked += 1
    assert checked > 40
    assert metrics["ceiling"]["overall"]["agreement"] == pytest.approx(1.0)
    assert metrics["ceiling"]["overall"]["accuracy"] == pytest.approx(1.0)


def test_spammers_are_flagged_by_the_agreement_report(world, monkeypatch):
    store, batch, truth = world
    _perfect_reader(monkeypatch, truth)
    profile = RaterProfile(name="crowd", n_raters=4, temperature=0.02, spammer_share=0.25)
    metrics = simulate(store, profile.validate(), None, 1000, batch_id=batch, seed=3)
    judgments = store.judgments(SYSTEM, batch_id=batch)
    report = agreement_report(judgments, min_shared=10, kappa_threshold=0.5)
    assert report.flagged == metrics["spammer_ids"]
    assert report.n_units == {"pairs": 24, "ranks": 24, "implied_pairs": 24}
    assert report.alpha_ranks is not None and report.alpha_ranks < 0.95


def test_cli_simulate_and_agreement(world, tiny_oracle, tmp_path, capsys):
    store, _, _ = world
    tiny_oracle.save(tmp_path / "oracle")
    profile = tmp_path / "pool.yaml"
    profile.write_text("n_raters: 4\nspammer_share: 0.34\ntemperature: 0.1\n")
    db = str(store.db_path)
    code = main(
        [
            "label",
            "simulate",
            "--db",
            db,
            "--profile",
            str(profile),
            "--oracle",
            str(tmp_path / "oracle"),
            "--n",
            "30",
            "--batch",
            "b1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "wrote 30 judgments by 4 simulated raters" in out and "sim-pool-" in out
    assert json.loads(default_metrics_path(store, RaterProfile(name="pool")).read_text())

    metrics = tmp_path / "agreement" / "metrics.json"
    code = main(
        [
            "label",
            "agreement",
            "--db",
            db,
            "--batch",
            "b1",
            "--out",
            str(metrics),
            "--min-shared",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Krippendorff alpha, pairs (nominal)" in out and "sim-pool-0" in out
    data = json.loads(metrics.read_text())
    assert data["n_judgments"] == 30 and data["rater_names"]
    assert {"alpha_pairs_nominal", "alpha_ranks_ordinal", "kappa", "flagged_raters"} <= set(data)

    bad = tmp_path / "bad.yaml"
    bad.write_text("temperature: -1\n")
    code = main(
        [
            "label",
            "simulate",
            "--db",
            db,
            "--profile",
            str(bad),
            "--oracle",
            str(tmp_path / "oracle"),
            "--n",
            "1",
        ]
    )
    assert code == 2 and "temperature" in capsys.readouterr().err
    code = main(["label", "agreement", "--db", db, "--batch", "nope"])
    assert code == 2 and "nope" in capsys.readouterr().err
