"""The oracle's doubt: decoded distributions, expected fidelity, legibility and calibration."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from base_models.errors import ArtalignError
from base_models.oracle.calibration import (
    calibration_table,
    expected_calibration_error,
    fit_temperature,
    head_samples,
    pool,
    rescale,
    synthesis_truth,
)
from base_models.oracle.expected import count_distribution, expected_fidelity, legibility
from base_models.oracle.fidelity import fidelity, parse_prompt
from base_models.oracle.model import AttributeOracle, default_vocab
from base_models.oracle.reading import OracleReading, decode
from base_models.raters import RaterProfile, pair_probabilities, utility
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler

VOCAB = default_vocab()


def _dist(key: str, top: str, p: float) -> dict[str, float]:
    """A distribution over the vocabulary of `key` with `p` on `top`, the rest spread evenly."""
    names = VOCAB[key + "s"]
    rest = (1 - p) / (len(names) - 1)
    return {n: (p if n == top else rest) for n in names}


def _blob(presence: float, shape_p: float, colour_p: float, row=1, col=1) -> dict:
    return {
        "shape": "circle",
        "colour": "red",
        "size": "large",
        "row": row,
        "col": col,
        "position": "",
        "confidence": presence,
        "probs": {
            "shape": _dist("shape", "circle", shape_p),
            "colour": _dist("colour", "red", colour_p),
            "size": _dist("size", "large", 1.0),
        },
    }


def _reading(objects, presence=None, background_p=1.0) -> OracleReading:
    presence = presence or [o["confidence"] for o in objects] + [0.0] * (9 - len(objects))
    probs = {"background": _dist("background", "white", background_p)}
    probs["style"] = _dist("style", "flat", 1.0)
    return OracleReading(objects, "white", "flat", presence, probs)


# ----------------------------------------------------------------------------- decoding


def test_decode_keeps_distributions_whose_top_is_the_value_read():
    torch.manual_seed(0)
    logits = {
        "presence": torch.tensor([[4.0] * 2 + [-4.0] * 7]),
        "shape": torch.randn(1, 9, len(VOCAB["shapes"])),
        "colour": torch.randn(1, 9, len(VOCAB["colours"])),
        "size": torch.randn(1, 9, len(VOCAB["sizes"])),
        "background": torch.randn(1, len(VOCAB["backgrounds"])),
        "style": torch.randn(1, len(VOCAB["styles"])),
    }
    (reading,) = decode(logits, VOCAB, 3)
    assert reading.count == 2
    for o in reading.objects:
        for key in ("shape", "colour", "size"):
            dist = o["probs"][key]
            assert sum(dist.values()) == pytest.approx(1.0)
            assert o[key] == max(dist, key=dist.get)
    assert reading.background == max(
        reading.probs["background"], key=reading.probs["background"].get
    )
    record = reading.to_record(probabilities=True)
    assert json.loads(json.dumps(record)) == record  # JSON-safe, for caches and logs
    assert "probs" not in reading.to_record()["objects"][0]
    # a temperature above 1 flattens a head without changing what is read
    (hot,) = decode(logits, VOCAB, 3, temperatures={"shape": 4.0})
    assert [o["shape"] for o in hot.objects] == [o["shape"] for o in reading.objects]
    top = [max(o["probs"]["shape"].values()) for o in reading.objects]
    assert all(max(h["probs"]["shape"].values()) < t for h, t in zip(hot.objects, top, strict=True))


def test_temperatures_are_saved_loaded_and_checked(tmp_path):
    oracle = AttributeOracle(channels=(4, 4, 4), hidden=8)
    oracle.temperatures = {"shape": 2.5}
    oracle.save(tmp_path)
    assert AttributeOracle.load(tmp_path).temperatures == {"shape": 2.5}
    config = json.loads((tmp_path / "config.json").read_text())
    config["temperatures"] = {"shape": -1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtalignError, match="temperature of shape is -1"):
        AttributeOracle.load(tmp_path)


# ----------------------------------------------------------------------------- expected fidelity


def test_plain_records_give_the_same_expected_fidelity_as_fidelity():
    sampler = SceneSampler(split="all")
    rng = np.random.default_rng(0)
    for i in range(40):
        truth, _ = sampler.sample(np.random.default_rng(i))
        read, _ = sampler.sample(rng)  # an unrelated reading: partial credit
        for record in (truth.to_record(), read.to_record()):
            required = parse_prompt(f"a {truth.objects[0].colour} {truth.objects[0].shape}")
            assert expected_fidelity(record, required) == pytest.approx(
                fidelity(record, required)[0]
            )


def test_count_distribution_is_the_poisson_binomial():
    presence = [0.9, 0.2, 0.5, 0.0, 1.0, 0.3, 0.7, 0.1, 0.6]
    brute = [0.0] * 10
    for bits in itertools.product((0, 1), repeat=9):
        p = np.prod([q if b else 1 - q for q, b in zip(presence, bits, strict=True)])
        brute[sum(bits)] += p
    assert count_distribution({"presence": presence}) == pytest.approx(brute)
    assert count_distribution({"count": 2, "objects": []}) == [0.0, 0.0, 1.0]


def test_expected_fidelity_hand_computed():
    # "a red circle on a white background": shape, colour, count, background = 4 attributes
    required = parse_prompt("a red circle on a white background")
    presence = [0.8, 0.1] + [0.0] * 7
    reading = _reading([_blob(0.8, 0.4, 0.9)], presence=presence, background_p=0.7)
    p_count_1 = 0.8 * 0.9 + 0.2 * 0.1
    want = (0.8 * 0.4 + 0.8 * 0.9 + p_count_1 + 0.7) / 4
    assert expected_fidelity(reading, required) == pytest.approx(want)
    # the most likely reading satisfies all four: hard fidelity gives full credit
    assert fidelity(reading, required)[0] == 1.0


def test_a_blob_earns_less_than_a_clear_shape_and_is_illegible():
    clear = _reading([_blob(1.0, 0.97, 0.97)])
    blob = _reading([_blob(1.0, 0.3, 0.97)])
    profile = RaterProfile(name="t", illegible_below=0.5).validate()
    prompt = "a red circle"
    assert utility(clear, prompt, profile) > utility(blob, prompt, profile) + 0.15
    assert legibility(clear) > 0.9 and legibility(blob) < 0.5
    assert legibility(_reading([])) == 1.0  # an empty canvas is clear, if bad
    both_blobs = pair_probabilities(0.5, 0.4, profile, illegible=True)
    assert both_blobs["both_bad"] == profile.both_bad_prob
    assert pair_probabilities(0.5, 0.4, profile)["both_bad"] == 0.0


def test_illegible_below_is_checked():
    with pytest.raises(ArtalignError, match="illegible_below"):
        RaterProfile(name="t", illegible_below=1.5).validate()


# ----------------------------------------------------------------------------- calibration


def test_ece_of_known_cases():
    perfect = expected_calibration_error([0.8] * 10, [True] * 8 + [False] * 2)
    assert perfect["ece"] == pytest.approx(0.0)
    over = expected_calibration_error([0.9] * 10, [True] * 5 + [False] * 5)
    assert over["ece"] == pytest.approx(0.4) and over["mce"] == pytest.approx(0.4)
    mixed = expected_calibration_error([0.95, 0.95, 0.55, 0.55], [True, True, True, False])
    assert mixed["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert len(mixed["bins"]) == 2
    with pytest.raises(ArtalignError, match="confidences for"):
        expected_calibration_error([0.5], [True, False])


def test_temperature_fit_recovers_an_overconfident_head():
    rng = np.random.default_rng(0)
    names = VOCAB["shapes"]
    samples = []
    for _ in range(600):
        logits = rng.normal(0, 1.0, len(names))  # the true distribution
        true = names[rng.choice(len(names), p=np.exp(logits) / np.exp(logits).sum())]
        over = np.exp(3 * logits) / np.exp(3 * logits).sum()  # a head three times too sharp
        samples.append((dict(zip(names, over.tolist(), strict=True)), true))
    t = fit_temperature(samples)
    assert 2.4 < t < 3.7
    before = calibration_table({"shape": samples})["shape"]["ece"]
    after = calibration_table({"shape": samples}, {"shape": t})["shape"]["ece"]
    assert after < before / 2
    assert rescale({"a": 0.5, "b": 0.5}, 3.0) == pytest.approx({"a": 0.5, "b": 0.5})


def _synthesis_agreement(n: int, all_wrong: bool) -> float:
    """Share of attributes synthesis_truth gets right on renders, from a misread start."""
    sampler = SceneSampler(split="all")
    right, total = 0, 0
    for i in range(n):
        scene, jitter = sampler.sample(np.random.default_rng(100 + i))
        truth = scene.to_record()
        objects = [
            {**o, "shape": "square" if o["shape"] != "square" else "circle"}
            for o in truth["objects"]
        ]
        background, style = truth["background"], truth["style"]
        if all_wrong:  # colour, background and style misread too
            objects = [{**o, "colour": "blue" if o["colour"] != "blue" else "red"} for o in objects]
            background = "black" if background != "black" else "white"
            style = "flat" if style != "flat" else "dotted"
        found = synthesis_truth(
            render_scene(scene, 32, jitter), OracleReading(objects, background, style)
        )
        for got, want in zip(found["objects"], truth["objects"], strict=True):
            right += sum(got[k] == want[k] for k in ("shape", "colour", "size"))
            total += 3
        right += sum(found[k] == truth[k] for k in ("background", "style"))
        total += 2
    return right / total


def test_synthesis_truth_recovers_rendered_scenes():
    """The judge of generated images, checked on renders whose truth is known."""
    assert _synthesis_agreement(12, all_wrong=False) >= 0.97  # a start like the oracle's
    assert _synthesis_agreement(12, all_wrong=True) >= 0.88  # every attribute misread


def test_head_samples_pair_read_objects_with_true_cells():
    truth = {
        "objects": [{"shape": "circle", "colour": "red", "size": "large", "row": 1, "col": 1}],
        "background": "white",
        "style": "flat",
    }
    stray = _blob(1.0, 0.9, 0.9, row=0, col=0)  # no true object there: not counted
    samples = pool([head_samples(_reading([_blob(1.0, 0.6, 0.9), stray]), truth)])
    assert len(samples["shape"]) == 1 and len(samples["background"]) == 1
    table = calibration_table(samples)
    assert table["shape"]["accuracy"] == 1.0 and table["shape"]["confidence"] == pytest.approx(0.6)
