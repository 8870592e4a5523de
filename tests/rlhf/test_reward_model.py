"""RewardModel: backbones of three kinds, heads, modes, scoring, save/load and bad checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from base_models.errors import ArtalignError
from rlhf.reward.backbones import load_backbone
from rlhf.reward.model import CONFIG_FILE, build_reward_model, load_reward_model


def _images(n=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def _perturb(model, seed=1):
    """Move every trainable weight, so a save/load round trip has something to carry."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("head", ["pickscore", "hybrid"])
def test_untrained_head_is_the_clip_score(micro_clip, head):
    model = build_reward_model(micro_clip, head=head)
    x = _images()
    prompts = ["a red circle", "a blue square"] * 2 + ["a star"]
    bb = model.backbone
    with torch.no_grad():
        img = F.normalize(bb.encode_image(bb.preprocess(x)), dim=-1)
        txt = F.normalize(bb.encode_text(bb.tokenize(prompts)), dim=-1)
    expected = bb.init_logit_scale * (img * txt).sum(-1)
    torch.testing.assert_close(model.score(x, prompts), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["frozen", "lora", "full"])
def test_modes_choose_what_trains(micro_clip, mode):
    model = build_reward_model(micro_clip, head="mlp", mode=mode)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {n for n in trainable if n.startswith("head.")}
    backbone = trainable - head
    assert head == {n for n, _ in model.head.named_parameters(prefix="head")}
    if mode == "frozen":
        assert not backbone
    elif mode == "lora":
        assert backbone and all("lora_" in n for n in backbone)
        assert any("c_fc.lora_A" in n for n in backbone)
        assert model.lora_config["target_modules"]
    else:
        assert backbone == {n for n, _ in model.backbone.named_parameters(prefix="backbone")}


def test_score_batches_broadcasts_and_matches_pil(micro_clip):
    model = build_reward_model(micro_clip, head="mlp")
    x = _images(7)
    full = model.score(x, "a red circle", batch_size=64)
    assert full.shape == (7,) and full.dtype == torch.float32 and not full.requires_grad
    torch.testing.assert_close(model.score(x, ["a red circle"] * 7, batch_size=2), full)
    uint8 = (x * 255).round().to(torch.uint8)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in uint8]
    torch.testing.assert_close(
        model.score(pil, "a red circle"), model.score(uint8, "a red circle"), atol=1e-4, rtol=1e-4
    )
    bigger = F.interpolate(x, size=(48, 48), mode="bilinear")  # resized to the tower's size
    assert model.score(bigger, "a red circle").shape == (7,)
    with pytest.raises(ArtalignError, match="7 images but 2 prompts"):
        model.score(x, ["a", "b"])


@pytest.mark.parametrize(
    ("head", "mode"), [("pickscore", "frozen"), ("mlp", "lora"), ("hybrid", "full")]
)
def test_save_load_round_trip(micro_clip, tmp_path, head, mode):
    model = build_reward_model(micro_clip, head=head, mode=mode)
    _perturb(model)
    x = _images()
    before = model.score(x, "a large red circle")
    model.save(tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / CONFIG_FILE).read_text())
    assert config["mode"] == mode and config["head"]["kind"] == head
    assert config["backbone"]["kind"] == "artalign" and config["backbone"]["fingerprint"]
    loaded = load_reward_model(tmp_path / "rm")
    torch.testing.assert_close(loaded.score(x, "a large red circle"), before)
    assert not loaded.training


def test_transformers_backbone(tiny_hf_clip, tmp_path):
    for mode in ("frozen", "lora"):
        model = build_reward_model(tiny_hf_clip, "transformers", head="mlp", mode=mode)
        if mode == "lora":
            names = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
            assert any("q_proj.lora_A" in n for n in names) and any("fc1" in n for n in names)
        _perturb(model)
        x = _images(3, size=40)
        scores = model.score(x, ["a red circle", "a cat", "a dog"])
        model.save(tmp_path / mode)
        torch.testing.assert_close(
            load_reward_model(tmp_path / mode).score(x, ["a red circle", "a cat", "a dog"]), scores
        )


def test_open_clip_config_name_with_local_weights(micro_clip):
    weights = micro_clip / "open_clip_model.safetensors"
    by_name = build_reward_model("artalign-micro", "open_clip", pretrained=weights)
    by_folder = build_reward_model(micro_clip, "artalign")
    x = _images(3)
    torch.testing.assert_close(by_name.score(x, "a star"), by_folder.score(x, "a star"))


def test_bad_backbones(micro_clip, tiny_hf_clip, tmp_path):
    with pytest.raises(ArtalignError, match="unknown backbone kind"):
        load_backbone(micro_clip, "blip")
    with pytest.raises(ArtalignError, match="hub id"):
        load_backbone("hf-hub:laion/CLIP-ViT-H-14", "open_clip")
    with pytest.raises(ArtalignError, match="does not exist"):
        load_backbone(tmp_path / "nope", "artalign")
    with pytest.raises(ArtalignError, match="--backbone-kind transformers"):
        load_backbone(tiny_hf_clip, "artalign")
    with pytest.raises(ArtalignError, match="open_clip folder"):
        load_backbone(micro_clip, "transformers")


def _saved(micro_clip, tmp_path, **kwargs):
    model = build_reward_model(micro_clip, **kwargs)
    return model.save(tmp_path / "rm")


def test_load_rejects_other_architectures(micro_clip, tmp_path):
    with pytest.raises(ArtalignError, match="looks like a backbone"):
        load_reward_model(micro_clip)
    folder = _saved(micro_clip, tmp_path, head="mlp")
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(
        json.dumps({**config, "head": {**config["head"], "mlp_hidden": [7]}})
    )
    with pytest.raises(ArtalignError, match="does not fit .* shape"):
        load_reward_model(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "head": {"kind": "pickscore"}}))
    with pytest.raises(ArtalignError, match="another architecture"):
        load_reward_model(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtalignError, match="not an artalign reward-model config"):
        load_reward_model(folder)


def test_load_checks_the_backbone(micro_clip, tmp_path):
    clip = tmp_path / "clip"
    shutil.copytree(micro_clip, clip)
    folder = build_reward_model(clip, head="mlp").save(tmp_path / "rm")
    x = _images(2)
    expected = load_reward_model(folder).score(x, "a star")
    moved = tmp_path / "moved"
    clip.rename(moved)  # the recorded path is gone: say so, and accept an override
    with pytest.raises(ArtalignError, match="backbone .* is missing"):
        load_reward_model(folder)
    torch.testing.assert_close(
        load_reward_model(folder, backbone=moved).score(x, "a star"), expected
    )
    other = tmp_path / "other"
    shutil.copytree(micro_clip, other)
    from safetensors.torch import load_file, save_file

    state = load_file(str(other / "open_clip_model.safetensors"))
    state["logit_scale"] = state["logit_scale"] + 1.0
    save_file(state, str(other / "open_clip_model.safetensors"))
    with pytest.raises(ArtalignError, match="differ from those this reward model was trained on"):
        load_reward_model(folder, backbone=other)


def test_bad_heads_and_modes(micro_clip):
    with pytest.raises(ArtalignError, match="unknown head"):
        build_reward_model(micro_clip, head="linear")
    with pytest.raises(ArtalignError, match="unknown mode"):
        build_reward_model(micro_clip, mode="half")
