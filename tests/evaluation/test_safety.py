"""Safety: threshold selection, the concept checker, the filter, I2P, red-team prompts, adapters.

Figures are checked against values worked out by hand (or by brute force) on tiny inputs; the
checker runs on the random artalign-micro CLIP (conftest's `micro_clip`).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from base_models.errors import ArtalignError
from evaluation.cli_eval import app as eval_app
from evaluation.context import EvalContext, Samples
from evaluation.safety.adapters import Q16, get_classifier, nudenet_score
from evaluation.safety.calibrate import (
    CalibrationConfig,
    auc,
    calibrate_embeddings,
    labelled_folder,
    rates,
    split,
    threshold_for_fpr,
    union_thresholds,
    world_checker,
)
from evaluation.safety.checker import ClipEmbedder, ConceptChecker, filter_unsafe
from evaluation.safety.metrics import OBLIQUE_PHRASES, expected_max, i2p, redteam, safety

MICRO = {"n_render": 48, "tune_steps": 5, "test_frac": 0.25}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    """n random images with distinct flat backgrounds (so their embeddings differ)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=g)
    return (base + 0.2 * torch.rand(n, 3, 32, 32, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def embedder(micro_clip) -> ClipEmbedder:
    return ClipEmbedder.from_folder(micro_clip)


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory) -> Path:
    """A second micro CLIP with other weights."""
    from base_models.clip.model_io import model_config, save_clip
    from base_models.clip.train import build_model

    torch.manual_seed(1)
    cfg = model_config("artalign-micro")
    return save_clip(build_model(cfg), cfg, tmp_path_factory.mktemp("safety") / "other_clip")


def _first_image_checker(embedder: ClipEmbedder, images: torch.Tensor) -> ConceptChecker:
    """Flags exactly images[0]: its own embedding as the concept, a cosine threshold near 1."""
    emb = embedder.images(images)
    others = float((emb[1:] @ emb[0]).max())
    assert others < 0.9999, "test images must embed apart"
    return ConceptChecker(embedder, emb[:1], ["first"], [(1 + others) / 2])


# ------------------------------------------------------------------------------ thresholds
def test_threshold_for_fpr_on_hand_scores():
    neg = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert threshold_for_fpr(neg, 0.2) == pytest.approx(0.8)  # 0.9 and 1.0 pass: FPR 0.2
    assert threshold_for_fpr(neg, 0.25) == pytest.approx(0.8)  # 2.5 FPs allowed -> 2
    assert threshold_for_fpr(neg, 0.0) == pytest.approx(1.0)  # nothing passes
    assert (neg > threshold_for_fpr(neg, 0.999)).mean() <= 0.999
    pos = np.array([0.75, 0.85, 0.95, 1.5])
    r = rates(np.r_[pos, neg] > threshold_for_fpr(neg, 0.2), np.r_[[True] * 4, [False] * 10])
    assert r == {"recall": 0.75, "fpr": 0.2, "n_unsafe": 4, "n_safe": 10}
    with pytest.raises(ArtalignError):
        threshold_for_fpr(np.array([]), 0.1)


def test_union_thresholds_keep_the_union_within_target():
    # two concepts whose top negatives are different images: each may pass one image only
    tail = [0.1, 0.2, 0.3, 0.05, 0.15, 0.25]
    neg = np.array([[0.9, 0.0], [0.0, 0.9], [0.5, 0.4], [0.4, 0.5]] + [[v, v] for v in tail])
    t = union_thresholds(neg, 0.2)  # 2 of 10 false positives allowed in all
    assert t.tolist() == pytest.approx([0.5, 0.5])  # each concept passes its 0.9 only
    assert (neg > t).any(axis=1).mean() == pytest.approx(0.2)
    t0 = union_thresholds(neg, 0.0)
    assert not (neg > t0).any()


def test_auc_on_hand_values():
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)  # a tie: half
    assert auc(np.array([0.5, 0.7]), np.array([1, 1])) is None


def test_calibration_meets_the_fpr_target_on_separable_embeddings(embedder):
    # synthetic normalised embeddings: unsafe ones lean towards a hidden direction
    g = torch.Generator().manual_seed(0)
    d = embedder.tower.num_features
    direction = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    y = np.arange(400) % 4 == 0
    emb = torch.randn(400, d, generator=g) + 6.0 * torch.from_numpy(y).float()[:, None] * direction
    emb = torch.nn.functional.normalize(emb, dim=-1)
    cfg = CalibrationConfig(sources=["image", "tuned"], texts=["a warning sign"], tune_steps=30)
    checker, report = calibrate_embeddings(embedder, emb, y, cfg, "synthetic")
    assert report["calibration"]["fpr"] <= 0.05
    assert report["test"]["recall"] > 0.9 and report["test"]["fpr"] < 0.12
    parts = [report["calibration"], report["test"]]
    assert report["n_fit"] + sum(r["n_unsafe"] + r["n_safe"] for r in parts) == 400
    assert report["n_fit"] == pytest.approx(0.5 * 0.7 * 400, abs=2)  # fit_frac of the 70%
    assert checker.names == ["image", "tuned"]
    _, test = split(y, cfg.test_frac, cfg.seed)  # the report's test rates are the checker's
    flags = checker.flags_from_scores(checker.scores_of(emb)).numpy()
    assert rates(flags[test], y[test]) == report["test"]


# ------------------------------------------------------------------------------ checker
def test_special_care_concept_lowers_the_other_thresholds(embedder):
    d = embedder.tower.num_features
    c = torch.eye(d)[:2]
    checker = ConceptChecker(embedder, c, ["plain", "care"], [0.5, 0.3], [False, True], 0.1)
    scores = torch.tensor([[0.45, 0.2], [0.45, 0.35], [0.55, 0.0], [0.1, 0.9]])
    # row 1: the special concept fires, so 0.45 + 0.1 > 0.5; row 3: special alone flags nothing
    assert checker.flags_from_scores(scores).tolist() == [False, True, True, False]
    with pytest.raises(ArtalignError, match="special-care"):
        ConceptChecker(embedder, c, ["a", "b"], [0.5, 0.5], [True, True])
    with pytest.raises(ArtalignError, match="one embedding"):
        ConceptChecker(embedder, c, ["a"], [0.5])


def test_checker_save_load_roundtrip_and_wrong_clip(embedder, micro_clip, other_clip, tmp_path):
    images = _images(6)
    checker = _first_image_checker(embedder, images)
    checker.info["note"] = "roundtrip"
    out = checker.save(tmp_path / "checker")
    meta = json.loads((out / "checker.json").read_text())
    assert meta["clip"]["fingerprint"] == embedder.fingerprint and meta["names"] == ["first"]
    loaded = ConceptChecker.load(out)  # the CLIP recorded in checker.json
    assert torch.allclose(loaded.scores(images), checker.scores(images), atol=1e-6)
    assert loaded.flags(images).tolist() == [True] + [False] * 5
    assert loaded.info["note"] == "roundtrip"
    assert ConceptChecker.load(out, clip=micro_clip).thresholds.tolist() == pytest.approx(
        checker.thresholds.tolist()
    )
    with pytest.raises(ArtalignError, match="another CLIP"):
        ConceptChecker.load(out, clip=other_clip)
    with pytest.raises(ArtalignError, match="not a safety checker"):
        ConceptChecker.load(tmp_path)


def test_filter_blacks_out_flagged_images_only(embedder):
    images = _images(5, seed=3)
    out, flags = filter_unsafe(images, _first_image_checker(embedder, images))
    assert flags.tolist() == [True, False, False, False, False]
    assert torch.count_nonzero(out[0]) == 0
    assert torch.equal(out[1:], images[1:])

    class Fixed:  # any object with flags() works, e.g. an adapter
        def flags(self, x):
            return torch.tensor([False, True, False, True, False])

    out, flags = filter_unsafe(images, Fixed())
    assert torch.equal(out[[0, 2, 4]], images[[0, 2, 4]]) and out[[1, 3]].abs().sum() == 0
    kept, _ = filter_unsafe(images, Fixed(), replace="keep")
    assert torch.equal(kept, images)
    with pytest.raises(ArtalignError):
        filter_unsafe(images, Fixed(), replace="blur")


# ------------------------------------------------------------------------------ I2P
def test_expected_max_on_hand_values_and_brute_force():
    assert expected_max([0.0, 1.0], k=2) == pytest.approx(0.75)  # P(some 1 in two draws)
    assert expected_max([0.2, 0.4, 0.9], k=1) == pytest.approx(0.5)  # one draw: the mean
    v = np.array([0.1, 0.5, 0.5, 0.8])
    brute = np.mean([max(c) for c in itertools.product(v, repeat=3)])
    assert expected_max(v, k=3) == pytest.approx(brute)
    assert expected_max([0.3] * 7, k=25) == pytest.approx(0.3)
    with pytest.raises(ArtalignError):
        expected_max([], k=25)


# ------------------------------------------------------------------------------ prompt set
def test_redteam_prompt_set_contents():
    items = redteam(n=12, benign=4, seed=5)
    cats = [it["category"] for it in items]
    assert {c: cats.count(c) for c in set(cats)} == {
        "direct": 4,
        "oblique": 4,
        "mixed": 4,
        "benign": 4,
    }
    assert len({it["prompt"] for it in items}) == 16
    for it in items:
        shapes = [o.get("shape") for o in it.get("required", {}).get("objects", [])]
        if it["category"] == "direct":
            assert "warning sign" in it["prompt"] and "warning" in shapes
        elif it["category"] == "oblique":
            assert "warning" not in it["prompt"]
            assert any(p in it["prompt"] for p in OBLIQUE_PHRASES)
        elif it["category"] == "mixed":
            assert "warning" in shapes and len(shapes) >= 2
        else:
            assert "warning" not in shapes and not it["asks_unsafe"]
    assert redteam(n=12, benign=4, seed=5) == items  # deterministic
    assert redteam(n=12, benign=4, seed=6) != items
    assert [it["category"] for it in redteam(n=4)] == ["direct", "direct", "oblique", "mixed"]
    with pytest.raises(ArtalignError):
        redteam(n=0, benign=0)


# ------------------------------------------------------------------------------ metrics
def _samples(images: torch.Tensor, labels: list[bool] | None, sets: list[str]) -> Samples:
    cats = ["direct", "direct", "oblique", "mixed", "benign", "mixed"]
    prompts = ["p0", "p0", "p1", "p2", "p3", "p2"]
    items = []
    for i, s in enumerate(sets):
        item = {"set": s, "category": cats[i]}
        if labels is not None:
            item["unsafe"] = labels[i]
        items.append(item)
    n = len(images)
    return Samples(images, prompts[:n], list(range(n)), items)


def test_safety_and_i2p_metrics_on_tiny_inputs(embedder, micro_clip, tmp_path):
    images = _images(6, seed=4)
    path = _first_image_checker(embedder, images).save(tmp_path / "checker")
    ctx = EvalContext(clip_path=micro_clip, settings={"safety_checker": str(path)}, n_boot=50)
    labels = [True, True, False, False, False, False]
    samples = _samples(images, labels, ["redteam"] * 5 + ["composition"])
    # on redteam: images 0-4, flags [1, 0, 0, 0, 0], labels [1, 1, 0, 0, 0]
    out = safety(ctx, samples)
    assert out["flagged"].value == pytest.approx(0.2) and out["flagged"].n == 5
    assert out["flagged_direct"].value == pytest.approx(0.5)
    assert out["flagged_mixed"].value == 0.0 and out["flagged_mixed"].n == 1
    assert out["recall"].value == pytest.approx(0.5) and out["recall"].n == 2
    assert out["fpr"].value == 0.0 and out["fpr"].n == 3
    assert out["label_unsafe"].value == pytest.approx(0.4)
    both = safety(ctx, samples, on=["redteam", "composition"])
    assert both["flagged"].n == 6 and both["fpr"].n == 4
    nolabels = safety(ctx, _samples(images, None, ["redteam"] * 6))
    assert "recall" not in nolabels and "fpr" not in nolabels
    with pytest.raises(ArtalignError, match="neutral"):
        safety(ctx, samples, on="neutral")

    res = i2p(ctx, samples, on="all", k=2)
    assert res["inappropriate_prob"].value == pytest.approx(1 / 6)
    # per prompt: p0 = 0.5 (flags 1, 0), p1 = 0, p2 = 0, p3 = 0 -> E[max of 2] = 0.5 * 7/16
    assert res["expected_max"].value == pytest.approx(0.5 * (1 - (3 / 4) ** 2))
    assert res["expected_max"].n == 4
    lo, hi = res["expected_max"].ci
    assert 0.0 <= lo <= hi <= 0.5


def test_world_checker_is_calibrated_and_cached(embedder, micro_clip, tmp_path):
    cfg = CalibrationConfig(**MICRO)
    checker = world_checker(embedder, tmp_path, cfg=cfg)
    report = checker.info["calibration"]
    assert report["n_images"] == 48 and report["calibration"]["fpr"] <= 0.05
    (cached,) = list(tmp_path.iterdir())
    again = world_checker(embedder, tmp_path, cfg=cfg)  # loaded, not recalibrated
    assert torch.equal(again.thresholds, checker.thresholds)
    assert json.loads((cached / "checker.json").read_text())["names"] == ["tuned"]
    # the metric's default: calibrated on the procedural world with the context's CLIP
    ctx = EvalContext(clip_path=micro_clip, cache_dir=tmp_path, n_boot=20)
    images = _images(4)
    out = safety(ctx, _samples(images, None, ["redteam"] * 4), calibration=MICRO)
    assert out["flagged"].value == pytest.approx(checker.flags(images).float().mean().item())


def test_labelled_folder_reads_unsafe_records(micro_data, tmp_path):
    images, labels = labelled_folder(micro_data, 32)
    records = [json.loads(x) for x in (micro_data / "metadata.jsonl").read_text().splitlines()]
    assert images.shape == (16, 3, 32, 32) and labels.tolist() == [r["unsafe"] for r in records]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes((micro_data / records[0]["file_name"]).read_bytes())
    (bad / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "x"}) + "\n")
    with pytest.raises(ArtalignError, match="unsafe"):
        labelled_folder(bad, 32)


def test_calibrate_safety_command(micro_clip, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "checker"
    args = [
        "calibrate-safety",
        "--clip",
        str(micro_clip),
        "--out",
        str(out),
        "--n-render",
        "48",
        "--sources",
        "image,tuned",
    ]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    assert "test" in result.output and "fpr" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 48 and metrics["calibration"]["fpr"] <= 0.05
    assert ConceptChecker.load(out).names == ["image", "tuned"]
    bad = CliRunner().invoke(eval_app, args[:5] + ["--generated", str(tmp_path)])
    assert isinstance(bad.exception, ArtalignError)


# ------------------------------------------------------------------------------ adapters
def test_q16_adapter_with_synthetic_prompts(embedder, micro_clip, tmp_path):
    images = _images(3)
    d = embedder.tower.num_features
    prompts = torch.randn(2, d, generator=torch.Generator().manual_seed(2))
    save_file({"prompts": prompts}, str(tmp_path / "q16.safetensors"))
    np.savez(tmp_path / "q16.npz", prompts=prompts.numpy())
    emb = embedder.images(images)
    cos = emb @ torch.nn.functional.normalize(prompts, dim=-1).T
    expected = torch.softmax(100.0 * cos, dim=-1)[:, 1].numpy()
    for clip, name in ((micro_clip, "q16.safetensors"), (embedder, "q16.npz")):
        q16 = get_classifier("q16", clip=clip, prompts=tmp_path / name)
        assert np.allclose(q16.probabilities(images), expected, atol=1e-5)
        assert q16.flags(images).tolist() == (expected > 0.5).tolist()
    # through the metric: Q16's probabilities instead of the checker's flags, the suite's CLIP
    ctx = EvalContext(clip_path=micro_clip, n_boot=20)
    samples = Samples(images, ["a", "b", "b"], [0, 1, 2], [{"set": "redteam"}] * 3)
    params = {"prompts": str(tmp_path / "q16.npz")}
    res = i2p(ctx, samples, classifier="q16", classifier_params=params, k=1)
    assert res["inappropriate_prob"].value == pytest.approx(expected.mean(), abs=1e-5)
    per_prompt = [expected[0], expected[1:].mean()]  # k=1: the mean of the prompts' values
    assert res["expected_max"].value == pytest.approx(np.mean(per_prompt), abs=1e-5)
    save_file({"prompts": torch.randn(2, d + 1)}, str(tmp_path / "wide.safetensors"))
    with pytest.raises(ArtalignError, match="dims"):
        Q16(embedder, tmp_path / "wide.safetensors")
    (tmp_path / "prompts.p").write_bytes(b"not read")
    with pytest.raises(ArtalignError, match="never unpickles"):
        Q16(embedder, tmp_path / "prompts.p")
    with pytest.raises(ArtalignError, match="not found"):
        Q16(embedder, tmp_path / "missing.npz")


def test_nudenet_adapter_errors_and_scores(tmp_path):
    with pytest.raises(ArtalignError, match="not found"):
        get_classifier("nudenet", model=tmp_path / "320n.onnx")
    model = tmp_path / "320n.onnx"
    model.write_bytes(b"onnx")
    try:
        import onnxruntime  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(ArtalignError, match="pip install onnxruntime"):
            get_classifier("nudenet", model=model)
    with pytest.raises(ArtalignError, match="unknown safety classifier"):
        get_classifier("nsfw_magic")
    out = np.zeros((1, 22, 3))
    out[0, 4 + 1, 0] = 0.99  # FACE_FEMALE: not unsafe
    out[0, 4 + 3, 2] = 0.7  # FEMALE_BREAST_EXPOSED
    out[0, 4 + 14, 1] = 0.4  # MALE_GENITALIA_EXPOSED
    assert nudenet_score(out) == pytest.approx(0.7)
    assert nudenet_score(out, ("FACE_FEMALE",)) == pytest.approx(0.99)
    with pytest.raises(ArtalignError, match="22"):
        nudenet_score(np.zeros((1, 10, 3)))


def test_generate_safety_filter_blocks_flagged_images(embedder, tmp_path):
    """`artalign generate --safety-filter DIR`: the checker, found through its entry point."""
    import json

    import numpy as np
    from PIL import Image

    from base_models.cli_main import main
    from tests.base_models.sd_fixtures import make_tiny_sd_folder

    sd = make_tiny_sd_folder(tmp_path / "sd")
    args = ["generate", "--model", str(sd), "--prompt", "a red circle", "--n", "3"]
    args += ["--steps", "2", "--guidance", "1.0", "--seed", "5"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    files = [tmp_path / "plain" / "images" / f"{i:05d}.png" for i in range(3)]
    pixels = torch.stack(
        [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    )
    checker = _first_image_checker(embedder, pixels.float() / 255)
    checker.save(tmp_path / "checker")
    out = tmp_path / "filtered"
    code = main([*args, "--out", str(out), "--safety-filter", str(tmp_path / "checker")])
    assert code == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["flagged"] for r in records] == [True, False, False]
    assert np.asarray(Image.open(out / records[0]["file"])).max() == 0  # written black
    for r, f in zip(records[1:], files[1:], strict=True):
        assert np.array_equal(np.asarray(Image.open(out / r["file"])), np.asarray(Image.open(f)))
    code = main([*args, "--out", str(tmp_path / "x"), "--safety-filter", str(tmp_path / "none")])
    assert code != 0 and not (tmp_path / "x").exists()
