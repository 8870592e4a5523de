"""Simulated raters: profile files, the hidden utility, BT/PL sampling and the agreement ceiling."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from base_models import rater_ceiling as ceiling_module
from base_models.errors import ArtalignError
from base_models.oracle import OracleReading
from base_models.rater_ceiling import agreement_ceiling, rank_pair_marginals
from base_models.raters import (
    RaterProfile,
    load_profile,
    pair_probabilities,
    ranks_from_order,
    sample_pair,
    sample_ranking,
    sigmoid,
    taste,
    utility,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "raters"


def _profile(**kw) -> RaterProfile:
    return RaterProfile(name="t", **kw).validate()


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- profiles


def test_example_profiles_load():
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert {"default", "striped_lover"} <= set(names)
    for name in names:
        profile = load_profile(CONFIGS / f"{name}.yaml")
        assert profile.name == name
    assert load_profile(CONFIGS / "striped_lover.yaml").style["striped"] == 0.5
    assert load_profile(CONFIGS / "default.yaml").fidelity_weight > 0


def test_profile_values_and_name_from_file(tmp_path):
    path = _write(tmp_path, "name: crowd\nn_raters: 3\nstyle: {dotted: 1}\nsize: {small: -1}\n")
    profile = load_profile(path)
    assert (profile.name, profile.n_raters) == ("crowd", 3)
    assert profile.style == {"dotted": 1.0} and profile.size == {"small": -1.0}
    assert load_profile(_write(tmp_path, "temperature: 0.3\n", "pool_a.yaml")).name == "pool_a"


@pytest.mark.parametrize(
    "text, match",
    [
        ("temprature: 0.1\n", "unknown config key 'temprature'"),
        ("temperature: 0\n", "'temperature'.*positive"),
        ("temperature: hot\n", "'temperature' expects float"),
        ("spammer_share: 1.5\n", "'spammer_share'.*between 0 and 1"),
        ("n_raters: 0\n", "'n_raters'.*at least 1"),
        ("tie_margin: -1\n", "'tie_margin'"),
        ("style: {plaid: 0.5}\n", "'style'.*'plaid'"),
        ("style: striped\n", "'style' .*must map"),
        ("size: {large: lots}\n", "'size'.*weight 'lots'"),
        ("row: {up: 1}\n", "'row'.*'up'"),
        ("name: 'two words'\n", "'name'"),
        ("- a list\n", "mapping"),
    ],
)
def test_profile_errors_name_the_key(tmp_path, text, match):
    with pytest.raises(ArtalignError, match=match):
        load_profile(_write(tmp_path, text))


def test_missing_profile_file(tmp_path):
    with pytest.raises(ArtalignError, match="does not exist"):
        load_profile(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- utility

PROMPT = "a large red circle on a white background, striped style"  # 6 attributes


def _obj(shape, colour, size, row, col):
    return {"shape": shape, "colour": colour, "size": size, "row": row, "col": col}


def _record(objects, background="white", style="striped"):
    return {"objects": objects, "count": len(objects), "background": background, "style": style}


def test_utility_is_fidelity_without_taste():
    profile = _profile()
    exact = _record([_obj("circle", "red", "large", 0, 0)])
    assert utility(exact, PROMPT, profile) == pytest.approx(1.0)
    # wrong colour and style: 4 of 6 attributes
    off = _record([_obj("circle", "blue", "large", 0, 0)], style="flat")
    assert utility(off, PROMPT, profile) == pytest.approx(4 / 6)
    assert utility(off, PROMPT, _profile(fidelity_weight=3.0)) == pytest.approx(2.0)
    assert utility(_record([]), PROMPT, _profile(fidelity_weight=0.0)) == 0.0


def test_taste_terms_on_hand_made_readings():
    profile = _profile(
        style={"striped": 0.5},
        background={"black": -0.2},
        size={"large": 0.2},
        warmth=0.1,
        shape={"star": 0.3},
        position={"top left": 0.4},
        row={"bottom": 1.0},
        col={"right": 2.0},
    )
    # object 1: large (0.2) + warm red (0.1) + top left (0.4) = 0.7
    # object 2: small cool blue star in the bottom right: -0.1 + 0.3 + 1.0 + 2.0 = 3.2
    rec = _record([_obj("circle", "red", "large", 0, 0), _obj("star", "blue", "small", 2, 2)])
    assert taste(rec, profile) == pytest.approx(0.5 + (0.7 + 3.2) / 2)
    assert taste(_record([], background="black", style="flat"), profile) == pytest.approx(-0.2)
    expected = utility(rec, PROMPT, _profile()) + taste(rec, profile)
    assert utility(rec, PROMPT, profile) == pytest.approx(expected)


def test_utility_reads_an_oracle_reading_like_its_record():
    objects = [{**_obj("circle", "red", "large", 1, 1), "position": "center", "confidence": 1.0}]
    reading = OracleReading(objects=objects, background="white", style="striped")
    profile = _profile(style={"striped": 0.5}, position={"center": 0.25})
    assert utility(reading, PROMPT, profile) == pytest.approx(1.0 + 0.5 + 0.25)
    assert utility(reading, PROMPT, profile) == utility(reading.to_record(), PROMPT, profile)
    # an object the oracle is only 90% sure is there earns 90% of its object attributes
    # (shape, colour, size of PROMPT's 6), and its count of 1 is then uncertain too
    objects[0]["confidence"] = 0.9
    unsure = OracleReading(objects, "white", "striped", presence=[0.0] * 4 + [0.9] + [0.0] * 4)
    want = (3 * 0.9 + 0.9 + 2) / 6 + 0.5 + 0.25
    assert utility(unsure, PROMPT, profile) == pytest.approx(want)


# ----------------------------------------------------------------------------- answers


def test_pair_probabilities():
    p = pair_probabilities(0.8, 0.5, _profile(temperature=0.1))
    assert p["left"] == pytest.approx(1 / (1 + math.exp(-3))) and p["tie"] == p["both_bad"] == 0
    assert sum(p.values()) == pytest.approx(1.0)
    p = pair_probabilities(0.5, 0.52, _profile(tie_margin=0.05, tie_prob=0.4))
    assert p["tie"] == pytest.approx(0.4)
    assert p["left"] == pytest.approx(0.6 * sigmoid(-0.2))
    p = pair_probabilities(0.1, 0.2, _profile(both_bad_below=0.3, both_bad_prob=0.5))
    assert p["both_bad"] == 0.5 and p["left"] + p["right"] == pytest.approx(0.5)
    assert pair_probabilities(0.1, 0.4, _profile(both_bad_below=0.3))["both_bad"] == 0


def test_bradley_terry_sampling_frequencies():
    profile = _profile(temperature=0.2, tie_margin=0.2, tie_prob=0.3, both_bad_below=0.5)
    rng = np.random.default_rng(0)
    n = 20000
    counts = Counter(sample_pair(0.3, 0.15, profile, rng) for _ in range(n))
    for choice, p in pair_probabilities(0.3, 0.15, profile).items():
        assert counts[choice] / n == pytest.approx(p, abs=0.015), choice
    spam = Counter(sample_pair(0.9, 0.0, profile, rng, spammer=True) for _ in range(4000))
    assert set(spam) == {"left", "right"} and abs(spam["left"] / 4000 - 0.5) < 0.04


def test_ranks_from_order():
    assert ranks_from_order([2, 0, 1], [False, False, False]) == [2, 3, 1]
    assert ranks_from_order([3, 0, 1, 2], [False, False, True, False]) == [2, 2, 4, 1]
    assert ranks_from_order([0, 1, 2, 3], [False, True, True, False]) == [1, 1, 1, 4]


def test_plackett_luce_sampling_frequencies():
    u = [0.6, 0.3, 0.0]
    profile = _profile(temperature=0.3)
    w = np.exp(np.array(u) / 0.3)
    rng = np.random.default_rng(1)
    n = 20000
    counts = Counter(tuple(sample_ranking(u, profile, rng)) for _ in range(n))
    for order in itertools.permutations(range(3)):
        rest, p = list(order), 1.0
        for item in order:  # P(order) = prod w_i / sum of the remaining w
            p *= w[item] / w[rest].sum()
            rest.remove(item)
        ranks = tuple(ranks_from_order(order, [False] * 3))
        assert counts[ranks] / n == pytest.approx(p, abs=0.015), order
    spam = Counter(tuple(sample_ranking(u, profile, rng, spammer=True)) for _ in range(6000))
    assert len(spam) == 6 and max(spam.values()) / 6000 < 1 / 6 + 0.03


def test_rank_ties():
    profile = _profile(tie_margin=0.1, tie_prob=1.0)
    rng = np.random.default_rng(2)
    assert sample_ranking([0.5, 0.5, 0.5], profile, rng) == [1, 1, 1]
    ranks = sample_ranking([0.5, 0.5, -9.0], profile, rng)
    assert ranks == [1, 1, 3]
    with pytest.raises(ArtalignError, match="at least 2"):
        sample_ranking([0.1], profile, rng)


# ----------------------------------------------------------------------------- ceiling


def _monte_carlo(profile, tasks, n, seed):
    """Empirical agreement of two independent raters and the accuracy of predicting the sign of
    u_A - u_B (never a tie): the analytic `accuracy_no_ties`."""
    rng = np.random.default_rng(seed)
    agree, credit = [], []
    for _ in range(n):
        kind, u = tasks[rng.integers(len(tasks))]
        spam = rng.random(2) < profile.spammer_share
        if kind == "pair":
            a, b = (sample_pair(u[0], u[1], profile, rng, s) for s in spam)
            better = "left" if u[0] > u[1] else "right"
            agree.append(a == b)
            credit.append(1.0 if a == better else 0.5 if a in ("tie", "both_bad") else 0.0)
        else:
            ra, rb = (np.array(sample_ranking(u, profile, rng, s)) for s in spam)
            i, j = sorted(rng.choice(len(u), 2, replace=False))
            sa, sb = np.sign(ra[i] - ra[j]), np.sign(rb[i] - rb[j])
            agree.append(sa == sb)
            truth = -np.sign(u[i] - u[j])  # a smaller rank is better
            credit.append(1.0 if sa == truth else 0.5 if sa == 0 else 0.0)
    return float(np.mean(agree)), float(np.mean(credit))


@pytest.mark.parametrize("kind, k", [("pair", 2), ("rank", 4)])
def test_ceiling_matches_monte_carlo(kind, k):
    profile = _profile(
        temperature=0.15, spammer_share=0.2, tie_margin=0.1, tie_prob=0.5, both_bad_below=0.3
    )
    rng = np.random.default_rng(3)
    tasks = [(kind, list(rng.uniform(0, 1, k))) for _ in range(8)]
    analytic = agreement_ceiling(profile, tasks)[kind]
    agree, accuracy = _monte_carlo(profile, tasks, 16000, seed=4)
    assert analytic["agreement"] == pytest.approx(agree, abs=0.01)
    assert analytic["accuracy_no_ties"] == pytest.approx(accuracy, abs=0.01)
    assert analytic["accuracy"] >= analytic["accuracy_no_ties"]  # a tie may be the best guess
    assert analytic["n_tasks"] == 8 and analytic["n_units"] == 8 * k * (k - 1) // 2


def test_ceiling_limits_and_layout():
    tasks = [("pair", [0.9, 0.1]), ("rank", [0.0, 1.0, 2.0])]
    sharp = agreement_ceiling(_profile(temperature=1e-3), tasks)
    assert sharp["overall"]["agreement"] == pytest.approx(1.0)
    assert sharp["overall"]["accuracy"] == pytest.approx(1.0)
    assert sharp["overall"]["n_units"] == 4
    spam = agreement_ceiling(_profile(spammer_share=1.0), tasks)
    assert spam["pair"]["agreement"] == pytest.approx(0.5)
    assert spam["rank"]["accuracy"] == pytest.approx(0.5)
    only_pairs = agreement_ceiling(_profile(), [("pair", [0.2, 0.2])])
    assert only_pairs["rank"]["agreement"] is None and only_pairs["rank"]["accuracy"] is None
    assert only_pairs["pair"]["accuracy"] == pytest.approx(0.5)  # equal utilities: a coin
    with pytest.raises(ArtalignError, match="2 utilities"):
        agreement_ceiling(_profile(), [("pair", [0.1, 0.2, 0.3])])
    with pytest.raises(ArtalignError, match="kind"):
        agreement_ceiling(_profile(), [("rate", [0.1, 0.2])])


def test_ceiling_bounds_a_model_that_predicts_ties_when_raters_often_tie():
    """Hand-computed: the old ceiling (pick the better image) was below a tie prediction."""
    profile = _profile(temperature=0.1, tie_margin=0.1, tie_prob=0.6)
    # equal utilities: tie 0.6, left 0.2, right 0.2. Predicting left or right earns
    # 0.2 + 0.6 / 2 = 0.5 (the old figure), predicting a tie 0.6 + 0.4 / 2 = 0.8
    same = agreement_ceiling(profile, [("pair", [0.2, 0.2])])["pair"]
    assert same["accuracy_no_ties"] == pytest.approx(0.5)
    assert same["accuracy"] == pytest.approx(0.8)
    # u = (0.25, 0.2): tie 0.6, left 0.4 sigmoid(0.5), right the rest of 0.4
    left = 0.4 * sigmoid(0.5)
    near = agreement_ceiling(profile, [("pair", [0.25, 0.2])])["pair"]
    by_prediction = {"left": left + 0.3, "right": (0.4 - left) + 0.3, "tie": 0.6 + 0.4 / 2}
    assert near["accuracy_no_ties"] == pytest.approx(by_prediction["left"])  # the old formula
    assert near["accuracy"] == pytest.approx(max(by_prediction.values())) == pytest.approx(0.8)
    assert near["accuracy"] > near["accuracy_no_ties"] + 0.25
    # a rank task's implied pairs are bounded the same way
    ranked = agreement_ceiling(profile, [("rank", [0.2, 0.2, 0.9])])["rank"]
    assert ranked["accuracy"] > ranked["accuracy_no_ties"]


def test_rank_marginals_without_ties_are_bradley_terry_and_fallback_agrees(monkeypatch):
    u = [0.4, 0.1, 0.35, 0.0]
    above, tie = rank_pair_marginals(u, _profile(temperature=0.2))
    assert above[0, 1] == pytest.approx(sigmoid(0.3 / 0.2)) and not tie.any()
    profile = _profile(temperature=0.2, tie_margin=0.1, tie_prob=0.5)
    exact_above, exact_tie = rank_pair_marginals(u, profile)
    assert np.allclose(exact_above + exact_above.T + exact_tie, 1 - np.eye(4))
    monkeypatch.setattr(ceiling_module, "MAX_EXACT_K", 3)
    monkeypatch.setattr(ceiling_module, "MONTE_CARLO_DRAWS", 4000)
    mc_above, mc_tie = rank_pair_marginals(u, profile)
    assert np.allclose(mc_above, exact_above, atol=0.03)
    assert np.allclose(mc_tie, exact_tie, atol=0.03)
