"""Active selection: the reward model's doubt as task priorities and as a judgment picker."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from base_models.cli_main import main
from base_models.errors import ArtalignError
from labeling_app.store import Store
from rlhf.reward.data import Pair, PreferenceData, Ranking
from rlhf.reward.priorities import doubt, prioritise, select_uncertain


def _grey(level: int) -> Image.Image:
    return Image.new("RGB", (8, 8), (level, level, level))


def _brightness(images, prompts):
    """A stand-in reward model: the mean grey level / 50 (a gap of 50 levels is one logit)."""
    return [float(np.asarray(im).mean()) / 50 for im in images]


def test_doubt_of_pairs_and_rankings():
    assert doubt([1.0, 1.0]) == pytest.approx(1.0)
    assert doubt([0.0, 30.0]) == pytest.approx(0.0, abs=1e-9)
    p = 1 / (1 + math.exp(-1.0))
    assert doubt([1.0, 0.0]) == pytest.approx(1 - abs(2 * p - 1))
    assert doubt([0.0, 0.0, 30.0]) == pytest.approx((1 + 0 + 0) / 3, abs=1e-9)
    with pytest.raises(ArtalignError, match="at least two"):
        doubt([1.0])


def test_prioritise_serves_the_most_doubtful_task_first(tmp_path):
    with Store(tmp_path / "labels.db", create=True) as store:
        batch = store.create_batch("b", {})
        pid = store.add_prompt("a grey square")
        levels = {"clear": (0, 250), "close": (100, 110), "middle": (100, 160)}
        tasks = {}
        for name, (a, b) in levels.items():
            ids = [store.add_image(pid, _grey(v), seed=0, model="m") for v in (a, b)]
            tasks[name] = store.add_task(batch, "pair", pid, ids)
        rank_ids = [store.add_image(pid, _grey(v), seed=0, model="m") for v in (10, 12, 14)]
        tasks["rank"] = store.add_task(batch, "rank", pid, rank_ids)
        summary = prioritise(store, _brightness)
        assert summary["n_tasks"] == 4
        priority = {t.task_id: t.priority for t in store.tasks()}
        assert priority[tasks["close"]] > priority[tasks["middle"]] > priority[tasks["clear"]]
        assert priority[tasks["close"]] == pytest.approx(doubt([2.0, 2.2]))
        rater = store.add_rater("r", "a-long-password")
        served = store.next_task(rater, order="uncertain")
        assert served.task_id in (tasks["rank"], tasks["close"])  # the two near coin flips
        assert priority[tasks["rank"]] > 0.9 and priority[tasks["close"]] > 0.9


def test_select_uncertain_adds_the_pairs_in_doubt():
    images = [f"img{i}" for i in range(6)]
    pairs = [Pair("p", 0, 1, 1.0), Pair("p", 2, 3, 1.0), Pair("p", 4, 5, 0.0)]
    ranking = Ranking("p", (0, 2, 4), (1, 2, 3))
    pool = PreferenceData(images, images, pairs, [ranking])
    levels = [0, 250, 120, 125, 60, 200]  # pair 1 is near a tie, pair 0 certain

    class Pool(PreferenceData):
        def load_image(self, index):
            return _grey(levels[index])

    pool = Pool(images, images, pairs, [ranking])
    chosen = pool.with_judgments([pairs[2]], [])
    out = select_uncertain(pool, chosen, 1, _brightness)
    assert out.pairs == [pairs[2], pairs[1]] and out.rankings == []
    everything = select_uncertain(pool, chosen, 10, _brightness)
    assert len(everything) == len(pool)


def test_prioritise_cli_refuses_a_missing_store(tmp_path, capsys):
    code = main(["reward", "prioritise", "--db", str(tmp_path / "no.db"), "--model", "x"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
