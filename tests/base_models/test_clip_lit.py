"""The CLIP's LiT stages: attribute targets, UniCL positives, supervised pretraining, the locked
image tower, resume across stages, and the binding probe."""

from __future__ import annotations

import os

import open_clip
import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from base_models.clip import WEIGHTS_FILE, ClipConfig, model_config, train_clip  # noqa: E402
from base_models.clip.evaluate import binding, binding_items  # noqa: E402
from base_models.clip.labels import (  # noqa: E402
    AttributeHeads,
    attribute_targets,
    flip_cells,
    head_sizes,
)
from base_models.clip.lit import swapped_caption  # noqa: E402
from base_models.clip.positives import (  # noqa: E402
    KeyIndex,
    contrastive_loss,
    image_keys,
    meaning_keys,
    names_position,
)
from base_models.clip.train import build_model  # noqa: E402
from base_models.config import load_config  # noqa: E402
from base_models.data import mirror_attrs  # noqa: E402
from base_models.errors import ArtalignError  # noqa: E402
from base_models.world.attributes import ALL_SHAPES, COLOUR_NAMES, ObjectSpec, SceneSpec  # noqa: E402
from base_models.world.captions import canonical_caption  # noqa: E402
from base_models.world.dataset import DataConfig, make_dataset  # noqa: E402
from tests.base_models.crash import stop_after_checkpoint  # noqa: E402

# The quick preset's stage keys at micro size; pretrain_batch_size and pretrain_lr keep their
# defaults (the batch is capped at the data set's 16 items), so a defect of a default shows here.
QUICK = ClipConfig.PRESETS["quick"]
LIT = {k: QUICK[k] for k in ("lock_image", "positives")} | {"pretrain_steps": 3}


def micro_cfg(**overrides) -> ClipConfig:
    return load_config(ClipConfig, "micro", overrides=overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(DataConfig(n=16), tmp_path_factory.mktemp("lit") / "data")


def _scene(*objects, background="white", style="flat") -> dict:
    return SceneSpec([ObjectSpec(*o) for o in objects], background, style).to_record()


# ----------------------------------------------------------------------------- targets


def test_targets_name_each_cells_content_and_follow_a_flip():
    rec = _scene(("star", "red", "large", 0, 0), ("circle", "blue", "small", 2, 1), style="dotted")
    t = attribute_targets([rec])
    assert t["cell_shape"][0, 0] == 1 + ALL_SHAPES.index("star")
    assert t["cell_colour"][0, 7] == 1 + COLOUR_NAMES.index("blue")
    assert int((t["cell_shape"][0] > 0).sum()) == 2  # the other seven cells are empty
    flipped = flip_cells(t, torch.tensor([True]))
    mirrored = attribute_targets([mirror_attrs(rec)])
    for name in ("cell_shape", "cell_colour", "cell_size"):
        assert torch.equal(flipped[name], mirrored[name])
    assert torch.equal(flip_cells(t, torch.tensor([False]))["cell_shape"], t["cell_shape"])


def test_targets_refuse_data_without_attribute_records():
    with pytest.raises(ArtalignError, match="pretrain_steps=0"):
        attribute_targets([{}])


def test_heads_loss_falls_and_accuracy_reads_occupied_cells():
    torch.manual_seed(0)
    recs = [_scene(("star", "red", "large", i % 3, 0)) for i in range(6)]
    targets = attribute_targets(recs)
    features = torch.randn(6, 16, requires_grad=True)
    heads = AttributeHeads(16)
    assert heads.linear.out_features == sum(head_sizes().values())
    opt = torch.optim.Adam([features, *heads.parameters()], lr=0.05)
    first = heads.loss(features, targets).item()
    for _ in range(200):
        loss = heads.loss(features, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 4
    assert heads.accuracy(features, targets)["cell_shape"] == 1.0


# ----------------------------------------------------------------------------- positives


def test_a_caption_is_positive_for_every_image_it_describes():
    a = _scene(("star", "red", "large", 0, 0))
    b = _scene(("star", "red", "large", 2, 2))  # the same object elsewhere
    c = _scene(("circle", "red", "large", 0, 0))
    scenes = [SceneSpec.from_record(r) for r in (a, b, c)]
    texts = [
        canonical_caption(scenes[0], False),
        canonical_caption(scenes[1], True),
        canonical_caption(scenes[2], False),
    ]
    assert not names_position(texts[0]) and names_position(texts[1])
    keys = KeyIndex(meaning_keys(texts, [a, b, c]), image_keys(texts, [a, b, c]))
    mask = keys.mask(torch.arange(3), torch.arange(3))
    # caption 0 (no place) fits images 0 and 1; caption 1 (bottom right) only image 1
    expected = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_without_records_only_identical_texts_are_positives():
    texts = ["a cat", "a dog", "a cat"]
    keys = KeyIndex(meaning_keys(texts, [{}] * 3), image_keys(texts, [{}] * 3))
    mask = keys.mask(torch.arange(3), torch.arange(3))
    assert torch.equal(mask, torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool))


def test_identity_mask_equals_open_clips_losses():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    eye = torch.eye(6, dtype=torch.bool)
    scale, bias = torch.tensor(12.0), torch.tensor(-3.0)
    ours = contrastive_loss(img, txt, eye, scale)
    ref = open_clip.loss.ClipLoss()(img, txt, scale)
    assert torch.allclose(ours, ref, atol=1e-6)
    ours_sig = contrastive_loss(img, txt, eye, scale, bias)
    ref_sig = open_clip.loss.SigLipLoss()(img, txt, scale, bias)
    assert torch.allclose(ours_sig, ref_sig, atol=1e-5)


def test_a_duplicate_caption_is_pulled_towards_both_images_not_pushed_away():
    """Two images with the same caption: CLIP's loss pushes caption 1 away from image 0; with
    both marked positive the gradient pulls it closer."""
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=-1)
    for mask, sign in (
        (torch.eye(2, dtype=torch.bool), 1),
        (torch.ones(2, 2, dtype=torch.bool), -1),
    ):
        txt = img.clone().requires_grad_(True)
        contrastive_loss(img, txt, mask, torch.tensor(10.0)).backward()
        # d loss / d (caption 1 . image 0): > 0 means the loss wants them apart
        assert sign * float(txt.grad[1] @ img[0]) > 0


# ----------------------------------------------------------------------------- training


def test_lit_run_locks_the_pretrained_image_tower(data, tmp_path, monkeypatch):
    import base_models.clip.train as train_module

    saved = {}
    save = train_module.save_checkpoint

    def keep(out, model, optimizer, scheduler, step, *args):
        saved[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return save(out, model, optimizer, scheduler, step, *args)

    monkeypatch.setattr(train_module, "save_checkpoint", keep)
    cfg = micro_cfg(**LIT)
    metrics = train_clip(cfg, data, tmp_path / "m")
    torch.manual_seed(cfg.seed)
    init = build_model(model_config(cfg.model)).state_dict()
    final = load_file(str(tmp_path / "m" / WEIGHTS_FILE))
    after_stage_one = saved[0]  # the checkpoint written between the stages
    for key in final:
        if key.startswith("visual."):  # moved in stage 1, then locked
            assert torch.equal(final[key], after_stage_one[key]), key
    assert not torch.equal(after_stage_one["visual.conv1.weight"], init["visual.conv1.weight"])
    assert not torch.equal(
        final["token_embedding.weight"], after_stage_one["token_embedding.weight"]
    )
    assert metrics["pretrain_steps"] == 3 and set(metrics["pretrain_train_accuracy"]) == {
        "cell_shape",
        "cell_colour",
        "cell_size",
        "style",
        "background",
        "colour_shape",
        "size_shape",
    }
    assert {"binding_colour_swap", "binding_shape_swap", "zero_shot_size"} <= set(metrics)


def test_lit_resume_continues_exactly_and_skips_stage_one(data, tmp_path, monkeypatch):
    """Stopped after contrastive step 2 and resumed, a LiT run ends where a straight one ends,
    and stage 1 (saved as the step-0 checkpoint) is not run again."""
    import base_models.clip.train as train_module

    cfg = micro_cfg(**LIT, max_steps=4, eval_n=0)
    straight = tmp_path / "straight"
    train_clip(cfg, data, straight)
    split = tmp_path / "split"
    stop_after_checkpoint(monkeypatch, train_module, lambda: train_clip(cfg, data, split), step=2)
    monkeypatch.setattr(train_module, "pretrain_image_tower", _fail)
    metrics = train_clip(cfg, data, split, resume=True)
    assert metrics["steps_this_run"] == 2 and metrics["pretrain_steps"] == 3
    a, b = load_file(str(straight / WEIGHTS_FILE)), load_file(str(split / WEIGHTS_FILE))
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def _fail(*args, **kwargs):
    raise AssertionError("stage 1 ran again on --resume")


def test_binding_probe_swaps_what_it_says():
    items = binding_items(5, 32)
    for _, (true, colours, shapes) in items:
        assert true != colours != shapes != true
        # the same words in another order: only which attribute goes with which object differs
        assert sorted(true.split()) == sorted(colours.split()) == sorted(shapes.split())
    model = build_model(model_config("artalign-micro")).eval()
    tok = open_clip.get_tokenizer("artalign-micro")
    from open_clip.transform import image_transform

    metrics = binding(model, tok, image_transform(32, is_train=False), 5, 32)
    assert metrics["binding_n"] == 5
    assert 0.0 <= metrics["binding_colour_swap"] <= 1.0


def test_swapped_caption_exchanges_two_colours_and_nothing_else():
    rec = _scene(("star", "red", "large", 0, 0), ("circle", "blue", "small", 2, 1))
    swapped = swapped_caption("a large red star and a small blue circle", rec, 0)
    assert swapped == "a large blue star and a small red circle on a white background, flat style"
    placed = swapped_caption("a large red star in the top left and a small blue circle", rec, 0)
    assert "in the top left" in placed and "a large blue star" in placed
    same = _scene(("star", "red", "large", 0, 0), ("circle", "red", "small", 2, 1))
    assert swapped_caption("two red things", same, 0) is None  # nothing to swap
    assert swapped_caption("a cat", {}, 0) is None


def test_hard_negative_joins_only_its_own_images_softmax():
    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    neg = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    eye, scale = torch.eye(4, dtype=torch.bool), torch.tensor(10.0)
    plain = contrastive_loss(img, txt, eye, scale)
    none = torch.zeros(4, dtype=torch.bool)
    assert torch.allclose(contrastive_loss(img, txt, eye, scale, None, neg, none), plain)
    assert contrastive_loss(img, txt, eye, scale, None, neg, ~none) > plain
    neg_t = neg.clone().requires_grad_(True)
    contrastive_loss(img, txt, eye, scale, None, neg_t, ~none).backward()
    assert float(neg_t.grad[0] @ img[0]) > 0  # the loss wants the swapped caption away
    sig = contrastive_loss(img, txt, eye, scale, torch.tensor(-2.0), neg, ~none)
    assert sig > contrastive_loss(img, txt, eye, scale, torch.tensor(-2.0))


def test_swap_negatives_train_and_need_a_locked_tower(data, tmp_path):
    metrics = train_clip(micro_cfg(**LIT, swap_negatives=True, max_steps=2), data, tmp_path / "m")
    assert metrics["steps"] == 2 and "binding_colour_swap" in metrics
    with pytest.raises(ArtalignError, match="swap_negatives needs lock_image"):
        micro_cfg(swap_negatives=True).validate()
