"""evaluate.py and baselines.py: held-out splits, scorers through one code path, ceilings."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from base_models.errors import ArtalignError
from base_models.rater_ceiling import agreement_ceiling, perfect_credit
from base_models.raters import RaterProfile
from rlhf.reward.baselines import (
    answer_probabilities,
    clip_score_fn,
    expected_credit,
    random_score_fn,
)
from rlhf.reward.data import Pair, PreferenceData, Ranking
from rlhf.reward.evaluate import (
    PairTable,
    evaluate_reward,
    evaluate_scorers,
    held_out_splits,
    judgment_records,
    ratios,
)
from rlhf.reward.metrics import pair_credit, rater_ceiling


def _png(level: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (level, level, level)).save(buf, format="PNG")
    return buf.getvalue()


def brightness(images, prompts) -> torch.Tensor:
    """A scorer that prefers brighter images (mean pixel value)."""
    return torch.tensor([float(np.asarray(im).mean()) for im in images])


@pytest.fixture
def toy() -> PreferenceData:
    """Images of levels 0, 50, ..., 250; raters prefer brighter, with known exceptions."""
    images = [_png(50 * i) for i in range(6)]
    pairs = [
        Pair("p0", 1, 0, 1.0, "r1"),  # brighter wins: right
        Pair("p0", 1, 0, 0.5, "r2"),  # a tie
        Pair("p1", 2, 3, 1.0, "r1"),  # darker wins: wrong
        Pair("p2", 4, 5, 0.0, "r1"),  # brighter (B) wins: right
        Pair("p3", 0, 5, 0.0, "r2"),
        Pair("p4", 2, 4, 0.0, "r1"),
    ]
    rankings = [Ranking("p5", (0, 3, 5), (3, 2, 1), "r1")]  # brightest ranked first
    return PreferenceData(images, [f"img{i}" for i in range(6)], pairs, rankings)


def test_pair_table_flattens_pairs_and_rankings(toy):
    t = PairTable.of(toy)
    assert len(t) == 6 + 3
    assert t.task[-3:] == [("rank", 0)] * 3
    # ranking (0, 3, 5) with ranks (3, 2, 1): every implied pair prefers the later image
    assert list(zip(t.a[-3:], t.b[-3:], t.p_a[-3:], strict=True)) == [
        (0, 3, 0.0),
        (0, 5, 0.0),
        (3, 5, 0.0),
    ]


def test_held_out_splits_never_score_training_prompts(toy):
    split = {"train_prompts": ["p0"], "val_prompts": ["p1"], "test_prompts": ["p2"]}
    val, test, notes = held_out_splits(toy, split)
    assert val.prompts() == ["p1"]
    assert test.prompts() == ["p2", "p3", "p4", "p5"]  # unseen prompts count as test
    assert notes["n_train_prompts_left_out"] == 1 and notes["val_from"] == "split.json"
    val, test, notes = held_out_splits(toy, None)  # no split file: a fifth tunes tau
    assert len(val.prompts()) == 1 and len(test.prompts()) == 5
    assert not set(val.prompts()) & set(test.prompts())
    with pytest.raises(ArtalignError, match="no held-out"):
        held_out_splits(toy, {"train_prompts": toy.prompts()})


def test_evaluate_scorers_hand_computed(toy):
    val = toy.subset(["p0"])
    test = toy.subset(["p1", "p2", "p3", "p4", "p5"])
    out = evaluate_scorers({"bright": brightness}, val, test, n_boot=50)
    s = out["scorers"]["bright"]
    # val: (p0) a right pair and a tie with |d| = 50: a tie threshold above 50 would halve the
    # right pair's credit and double the tie's, so tau stays 0 (the smallest best)
    assert s["tau"] == 0.0 and s["val_accuracy"] == pytest.approx(0.75)
    # test: p1 wrong, p2 right, p3 right, p4 right, 3 ranking pairs right -> 6 / 7
    assert s["accuracy"] == pytest.approx(6 / 7) and s["n"] == 7 and s["n_prompts"] == 5
    assert s["spearman"] == {"mean": pytest.approx(1.0), "n": 1, "n_undefined": 0}
    assert 0.0 <= s["ece"] <= 1.0
    assert out["ceiling"]["raters"]["n_units"] == 0  # no task judged twice in the test split


def test_rater_ceiling_from_preference_data(toy):
    records = judgment_records(toy.subset(["p0"]))
    assert {r["task_id"] for r in records} == {0}  # same prompt and images: one task
    assert rater_ceiling(records)["accuracy"] == 0.5  # a preference against a tie
    # the same pair seen with A and B swapped is the same task and the same answer
    data = PreferenceData(
        toy.images, toy.names, [Pair("q", 1, 2, 1.0, "a"), Pair("q", 2, 1, 0.0, "b")]
    )
    assert rater_ceiling(judgment_records(data))["accuracy"] == 1.0


def test_random_baseline_is_seeded_and_consistent_per_image():
    images = [Image.new("RGB", (4, 4), (i, 0, 0)) for i in range(50)]
    a = random_score_fn(3)(images, ["x"] * 50)
    b = random_score_fn(3)(list(reversed(images)), ["y"] * 50)
    torch.testing.assert_close(a, b.flip(0))
    assert not torch.equal(a, random_score_fn(4)(images, ["x"] * 50))


def test_clip_score_is_the_scaled_cosine(micro_clip):
    from base_models.clip.model_io import embed_images, embed_texts, load_clip

    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "white")]
    prompts = ["a red circle", "a blue square", "a red circle"]
    got = clip_score_fn(micro_clip)(images, prompts)
    model, preprocess, tokenizer = load_clip(micro_clip)
    cos = (embed_images(model, images, preprocess) * embed_texts(model, tokenizer, prompts)).sum(-1)
    torch.testing.assert_close(got, model.logit_scale.exp().item() * cos, atol=1e-4, rtol=1e-4)


PROFILE = RaterProfile(
    name="t", temperature=0.2, spammer_share=0.25, tie_margin=0.1, tie_prob=0.4
).validate()


def test_answer_probabilities_match_the_labeling_ceiling():
    for kind, u in (("pair", [0.3, 0.25]), ("pair", [0.0, 0.6]), ("rank", [0.1, 0.5, 0.45, 0.0])):
        q = answer_probabilities(PROFILE, kind, u)
        assert q.sum(axis=1) == pytest.approx(np.ones(len(q)))
        pairs = [(i, j) for i in range(len(u)) for j in range(i + 1, len(u))]
        du = [u[i] - u[j] for i, j in pairs]
        want = agreement_ceiling(PROFILE, [(kind, u)])[kind]
        assert perfect_credit(q).mean() == pytest.approx(want["accuracy"])
        assert perfect_credit(q, ties=False).mean() == pytest.approx(want["accuracy_no_ties"])
        # the no-ties bound is the old "pick the image of higher utility" figure
        pick = np.where(np.array(du) > 0, q[:, 0], q[:, 1]) + 0.5 * q[:, 2]
        assert perfect_credit(q, ties=False) == pytest.approx(
            np.where(np.array(du) == 0, 0.5, pick)
        )
    spam = answer_probabilities(PROFILE, "rank", [0.1, 0.2, 0.3], spammer=True)
    assert spam.tolist() == [[0.5, 0.5, 0.0]] * 3


def test_expected_credit_hand_computed():
    q = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    diff = [1.0, -1.0, 0.01]
    got = expected_credit(q, diff, tau=0.05)
    assert got.tolist() == pytest.approx([0.7 + 0.05, 0.2 + 0.05, 0.1 + 0.45])


def test_perfect_credit_is_the_best_prediction_under_the_evaluation_tie_rule():
    """The analytic ceiling bounds every prediction `pair_credit` scores, predicted ties too."""
    # rows: a clear preference; a rater who ties often (q_a < 1/2: a tie prediction earns more)
    q = np.array([[0.7, 0.2, 0.1], [0.4, 0.2, 0.4], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0]])
    # predict A: q_a + q_tie/2; B: q_b + q_tie/2; a tie: 1/2 + q_tie/2
    assert perfect_credit(q).tolist() == pytest.approx([0.75, 0.7, 0.7, 0.5])
    assert perfect_credit(q, ties=False).tolist() == pytest.approx([0.75, 0.6, 0.5, 0.5])

    def credit_of(prediction: float, row: np.ndarray) -> float:
        """Expected `pair_credit` of diff = prediction (0: a tie) against answers A, B, tie."""
        labels = [1.0, 0.0, 0.5]
        return float(row @ pair_credit([prediction] * 3, labels))

    for row, bound in zip(q, perfect_credit(q), strict=True):
        best = max(credit_of(d, row) for d in (1.0, -1.0, 0.0))
        assert bound == pytest.approx(best)
    rng = np.random.default_rng(0)
    rows = rng.dirichlet([1.0, 1.0, 1.0], size=500)
    for tau in (0.0, 0.3, 1.0):
        got = expected_credit(rows, rng.normal(size=500), tau)
        assert (got <= perfect_credit(rows) + 1e-12).all()


def test_ratios_chance_corrected_on_hand_made_results():
    def scorer(acc, exp, exp_no_ties):
        return {"accuracy": acc, "expected_accuracy": exp, "expected_accuracy_no_ties": exp_no_ties}

    result = {
        "scorers": {
            "reward_model": scorer(0.8, 0.78, 0.77),
            "clip_score": scorer(0.6, 0.6, 0.6),
            "random": scorer(0.5, 0.52, 0.504),
        },
        "ceiling": {
            "raters": {"accuracy": 0.9},
            "analytic": {"accuracy": 0.85, "accuracy_no_ties": 0.838},
        },
    }
    r = ratios(result)
    assert r["vs_clip_score"] == pytest.approx(0.8 / 0.6) and r["vs_random"] == pytest.approx(1.6)
    assert r["vs_rater_ceiling"] == pytest.approx(0.8 / 0.9)
    assert r["chance_corrected_vs_rater_ceiling"] == pytest.approx(0.3 / 0.4)
    assert r["expected_vs_analytic_ceiling"] == pytest.approx(0.78 / 0.85)
    assert r["chance_corrected_expected_vs_analytic_ceiling"] == pytest.approx(0.26 / 0.33)
    name = "expected_no_ties_vs_analytic_ceiling_no_ties"
    assert r[name] == pytest.approx(0.77 / 0.838)
    assert r[f"chance_corrected_{name}"] == pytest.approx(0.266 / 0.334)
    # random scores: a raw ratio of 0.60, a chance-corrected 0
    result["scorers"]["reward_model"] = result["scorers"]["random"]
    assert ratios(result)[name] == pytest.approx(0.504 / 0.838)
    assert ratios(result)[f"chance_corrected_{name}"] == 0.0
    del result["scorers"]["random"]  # no random scorer: no chance correction
    assert ratios(result)["chance_corrected_vs_rater_ceiling"] is None


def test_evaluate_reward_writes_metrics(micro_clip, pref_store, tmp_path):
    from base_models.config import load_config
    from rlhf.reward.config import RewardConfig
    from rlhf.reward.loaders import load_from_store
    from rlhf.reward.train import train_reward

    data = load_from_store(pref_store.db)
    cfg = load_config(RewardConfig, "micro", overrides={"backbone": str(micro_clip), "head": "mlp"})
    train_reward(cfg, data, tmp_path / "rm")
    m = evaluate_reward(tmp_path / "rm", data, tmp_path / "eval", n_boot=50)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["scorers"].keys() == {"reward_model", "clip_score", "random"}
    split = json.loads((tmp_path / "rm" / "split.json").read_text())
    assert m["data"]["n_test_prompts"] == len(split["test_prompts"])
    rm = saved["scorers"]["reward_model"]
    assert rm["n"] == m["data"]["test"]["implied_pairs"] and rm["spearman"]["n"] >= 1
    assert saved["ceiling"]["raters"]["n_units"] > 0  # the toy store has overlap 2
    assert saved["ratios"]["vs_clip_score"] == pytest.approx(
        rm["accuracy"] / saved["scorers"]["clip_score"]["accuracy"]
    )
    rnd, rater = saved["scorers"]["random"]["accuracy"], saved["ceiling"]["raters"]["accuracy"]
    want = (rm["accuracy"] - rnd) / (rater - rnd) if rater > rnd else None
    assert saved["ratios"]["chance_corrected_vs_rater_ceiling"] == pytest.approx(want)
