"""The tiny CLIP: training, resume, both open_clip loading routes, evaluation, bad input."""

from __future__ import annotations

import json
import os

import open_clip
import pytest
import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from base_models.clip import (  # noqa: E402
    WEIGHTS_FILE,
    ClipConfig,
    embed_images,
    embed_texts,
    eval_clip,
    load_clip,
    model_config,
    train_clip,
)
from base_models.clip.data import BatchMaker, load_pairs  # noqa: E402
from base_models.clip.evaluate import caption_space, class_prompts, retrieval  # noqa: E402
from base_models.clip.model_io import preprocess_config  # noqa: E402
from base_models.clip.train import build_model  # noqa: E402
from base_models.config import load_config  # noqa: E402
from base_models.errors import ArtalignError  # noqa: E402
from base_models.train_utils import (  # noqa: E402
    EpochOrder,
    checkpoint_due,
    lr_factor,
    step_generator,
)
from base_models.world.dataset import DataConfig, make_dataset  # noqa: E402
from tests.base_models.crash import stop_after_checkpoint  # noqa: E402

EVAL_KEYS = {
    "eval_n",
    "zero_shot_n",
    "zero_shot_colour",
    "zero_shot_shape",
    "zero_shot_style",
    "retrieval_n",
    "retrieval_i2t_r1",
    "retrieval_i2t_r5",
    "retrieval_t2i_r1",
    "retrieval_t2i_r5",
}


def micro_cfg(**overrides) -> ClipConfig:
    return load_config(ClipConfig, "micro", overrides=overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(DataConfig(n=16), tmp_path_factory.mktemp("clip") / "data")


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A micro CLIP after 2 steps, and its metrics."""
    out = tmp_path_factory.mktemp("clip") / "model"
    return out, train_clip(micro_cfg(), data, out)


def _weights(path):
    return load_file(str(path))


# ----------------------------------------------------------------------------- training


def test_training_changes_parameters_and_writes_the_folder(trained):
    out, metrics = trained
    cfg = micro_cfg()
    torch.manual_seed(cfg.seed)  # the same initialisation train_clip starts from
    init = build_model(model_config(cfg.model)).state_dict()
    after = _weights(out / WEIGHTS_FILE)
    changed = [k for k in after if not torch.equal(after[k], init[k])]
    assert "visual.conv1.weight" in changed and "token_embedding.weight" in changed
    for name in ("open_clip_config.json", WEIGHTS_FILE, "train_config.yaml", "metrics.json"):
        assert (out / name).is_file(), name
    assert metrics["steps"] == 2 and metrics["train_items"] == 16
    assert set(metrics) >= EVAL_KEYS
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["steps"] == 2 and set(on_disk) >= EVAL_KEYS


def test_resume_continues_exactly(data, tmp_path, monkeypatch):
    """A run stopped after step 2 and resumed ends where an uninterrupted run ends:
    the optimizer state, scheduler, RNG and batch sampler all come back."""
    import base_models.clip.train as train_module

    cfg = micro_cfg(max_steps=4, eval_n=0)
    straight = tmp_path / "straight"
    train_clip(cfg, data, straight)

    split = tmp_path / "split"
    stop_after_checkpoint(monkeypatch, train_module, lambda: train_clip(cfg, data, split), step=2)
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 2
    assert not (split / WEIGHTS_FILE).exists()

    metrics = train_clip(cfg, data, split, resume=True)
    assert metrics["steps"] == 4 and metrics["steps_this_run"] == 2
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 4
    a, b = _weights(straight / WEIGHTS_FILE), _weights(split / WEIGHTS_FILE)
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    state_a = load_file(str(straight / "checkpoint" / "state.safetensors"))
    state_b = load_file(str(split / "checkpoint" / "state.safetensors"))
    moments = [k for k in state_a if k.endswith(("exp_avg", "exp_avg_sq", "step"))]
    assert moments
    for key in moments:
        torch.testing.assert_close(state_a[key], state_b[key], msg=key)


@pytest.mark.parametrize("name", ["artalign-micro", "artalign-tiny", "artalign-vit-tiny"])
def test_registered_configs_build_and_embed(name):
    """Every shipped config is known to open_clip by name and embeds 32px images and captions."""
    assert name in open_clip.list_models()
    model = build_model(model_config(name)).eval()
    tokens = open_clip.get_tokenizer(name)(["a small red circle on a white background"])
    with torch.no_grad():
        image = model.encode_image(torch.zeros(2, 3, 32, 32))
        text = model.encode_text(tokens)
    assert image.shape[1] == text.shape[1] == model_config(name)["embed_dim"]


def test_lr_schedule_is_warmup_then_cosine():
    assert lr_factor(0, 10, 110) == pytest.approx(0.1)
    assert lr_factor(9, 10, 110) == pytest.approx(1.0)
    assert lr_factor(10, 10, 110) == pytest.approx(1.0)
    assert lr_factor(60, 10, 110) == pytest.approx(0.5)
    assert lr_factor(110, 10, 110) == pytest.approx(0.0)


def test_step_streams_are_per_step_and_rank_and_checkpoints_skip_the_last_step():
    draw = lambda *a: torch.rand(3, generator=step_generator(*a)).tolist()  # noqa: E731
    assert draw(0, 5, 1) == draw(0, 5, 1)
    assert (
        len(
            {tuple(draw(0, 5, 0)), tuple(draw(0, 5, 1)), tuple(draw(0, 6, 0)), tuple(draw(1, 5, 0))}
        )
        == 4
    )
    assert [d for d in range(1, 11) if checkpoint_due(4, d, 10)] == [4, 8]
    assert not any(checkpoint_due(0, d, 10) for d in range(1, 11))
    assert not checkpoint_due(5, 10, 10)  # the final checkpoint is written apart


def test_flip_swaps_left_and_right_in_the_caption(data):
    tokenizer = open_clip.get_tokenizer("artalign-micro")
    pairs = load_pairs(data, 32, tokenizer)
    maker = BatchMaker(pairs, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255), hflip=1.0)
    index = torch.arange(len(pairs))
    images, tokens = maker(index, torch.Generator().manual_seed(0))
    for i in range(len(pairs)):
        expected = pairs.flip_tokens[i] if pairs.flippable[i] else pairs.tokens[i]
        assert torch.equal(tokens[i], expected.long())
        if pairs.flippable[i]:
            torch.testing.assert_close(images[i], pairs.images[i].flip(-1).float())
    mirrored = [i for i in range(len(pairs)) if "left" in pairs.texts[i]]
    if mirrored:  # the stored mirrored caption says right where the caption says left
        i = mirrored[0]
        words = tokenizer.decode(pairs.flip_tokens[i].tolist())
        assert "right" in words


def test_epoch_order_covers_each_item_once_per_epoch():
    order = EpochOrder(10, 3, seed=1)
    assert order.steps_per_epoch == 3
    epoch0 = torch.cat([order(s) for s in range(3)])
    assert len(set(epoch0.tolist())) == 9  # one item is left over, never repeated
    assert not torch.equal(order(3), order(0))  # a new permutation in epoch 1
    assert torch.equal(EpochOrder(10, 3, seed=1)(4), order(4))  # a pure function of the step


# ----------------------------------------------------------------------------- loading


def test_both_open_clip_routes_load_the_same_model(trained, data):
    out, _ = trained
    by_dir, _, pre_dir = open_clip.create_model_and_transforms("local-dir:" + str(out))
    by_name, _, pre_name = open_clip.create_model_and_transforms(
        "artalign-micro", pretrained=str(out / WEIGHTS_FILE)
    )
    ours, preprocess, tokenizer = load_clip(out)
    image = open_clip_image(data)
    texts = ["a small red circle on a white background, flat style", "a blue star on black"]
    embeddings = []
    for model, pre in ((by_dir, pre_dir), (by_name, pre_name), (ours, preprocess)):
        model.eval()
        embeddings.append((embed_images(model, [image], pre), embed_texts(model, tokenizer, texts)))
    for img, txt in embeddings[1:]:
        torch.testing.assert_close(img, embeddings[0][0])
        torch.testing.assert_close(txt, embeddings[0][1])


def open_clip_image(data):
    from PIL import Image

    return Image.open(data / "images" / "000000.png").convert("RGB")


def test_training_preprocessing_matches_open_clip_preprocess(data):
    """The in-memory batches are exactly what open_clip's preprocess makes of the PNGs."""
    cfg = model_config("artalign-micro")
    pp = preprocess_config(cfg)
    pairs = load_pairs(data, 32, open_clip.get_tokenizer("artalign-micro"))
    images, _ = BatchMaker(pairs, pp["mean"], pp["std"])(torch.arange(2))
    _, _, preprocess = open_clip.create_model_and_transforms("artalign-micro")
    expected = preprocess(open_clip_image(data))
    torch.testing.assert_close(images[0], expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- evaluation


def test_eval_clip_writes_metrics(trained, tmp_path):
    out, _ = trained
    metrics = eval_clip(str(out), tmp_path / "eval", n=12)
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(on_disk) >= EVAL_KEYS
    assert on_disk["eval_n"] == 12 == metrics["zero_shot_n"]
    for key in ("zero_shot_colour", "zero_shot_shape", "retrieval_i2t_r5"):
        assert 0.0 <= metrics[key] <= 1.0


def test_eval_clip_on_a_data_folder_and_by_config_name(trained, data, tmp_path):
    out, _ = trained
    metrics = eval_clip(
        "artalign-micro", tmp_path / "eval", data=data, pretrained=out / WEIGHTS_FILE
    )
    assert metrics["eval_n"] == metrics["retrieval_n"] == 16
    lines = (data / "metadata.jsonl").read_text().splitlines()
    singles = sum(1 for line in lines if len(json.loads(line)["objects"]) == 1)
    assert metrics["zero_shot_n"] == singles


def test_retrieval_counts_ties_in_the_querys_favour():
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=1)
    r = retrieval(emb, emb)
    assert r["retrieval_i2t_r1"] == 1.0 and r["retrieval_t2i_r1"] == 1.0
    r = retrieval(emb, emb[[2, 0, 1]])
    assert r["retrieval_i2t_r1"] == pytest.approx(1 / 3)


def test_class_prompts_state_the_class():
    prompts = class_prompts("colour", "purple", 20)
    assert len(prompts) == 20 and len(set(prompts)) > 5
    assert all("purple" in p or "violet" in p for p in prompts)
    flat = class_prompts("style", "flat", 5)
    assert all("plain" in p or "flat" in p for p in flat)


def test_caption_space_covers_every_combination_once_per_prompt():
    from base_models.world.attributes import COLOUR_NAMES, SHAPES, STYLES

    prompts, index = caption_space(SHAPES, per_combo=1)
    assert len(prompts) == len(COLOUR_NAMES) * len(SHAPES) * 3 * 4 * len(STYLES)
    assert all(len(v) == len(prompts) for v in index.values())
    i = 123
    colour, shape = COLOUR_NAMES[index["colour"][i]], SHAPES[index["shape"][i]]
    assert (
        colour in prompts[i]
        or {"cyan": "turquoise", "purple": "violet"}.get(colour, "?") in (prompts[i])
    )
    assert " in the " not in prompts[i]  # no positions: the image's cell is not assumed
    assert shape in prompts[i] or shape in ("circle", "square", "cross", "diamond")


def test_siglip_loss_trains_and_reloads(data, tmp_path):
    out = tmp_path / "siglip"
    train_clip(micro_cfg(loss="siglip", eval_n=0), data, out)
    model, _, _ = load_clip(out)
    assert model.logit_bias is not None


# ----------------------------------------------------------------------------- bad input


def test_missing_data_folder(tmp_path):
    with pytest.raises(ArtalignError, match="does not exist"):
        train_clip(micro_cfg(), tmp_path / "nope", tmp_path / "out")


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "hub id"),
        ("laion/CLIP-ViT-B-32", "does not exist"),
        ("no-such-model", "unknown model"),
        ("ViT-B-32", "pretrained=FILE"),
    ],
)
def test_bad_model_names_fail_fast(model, match, tmp_path):
    with pytest.raises(ArtalignError, match=match):
        load_clip(model)
    with pytest.raises(ArtalignError, match=match):
        eval_clip(model, tmp_path)


def test_pretrained_must_be_a_local_safetensors_file(tmp_path):
    with pytest.raises(ArtalignError, match="do not exist"):
        load_clip("artalign-micro", pretrained=tmp_path / "missing.safetensors")
    pickle = tmp_path / "weights.pt"
    pickle.write_bytes(b"not really")
    with pytest.raises(ArtalignError, match="never unpickles"):
        load_clip("artalign-micro", pretrained=pickle)
    with pytest.raises(ArtalignError, match="open_clip_config.json"):
        load_clip(tmp_path)


def test_unknown_preset_and_key():
    with pytest.raises(ArtalignError, match="unknown preset 'huge'"):
        load_config(ClipConfig, "huge")
    with pytest.raises(ArtalignError, match="unknown config key 'lr_max'"):
        load_config(ClipConfig, "micro", overrides=["lr_max=1"])
    with pytest.raises(ArtalignError, match="loss="):
        train_clip(micro_cfg(loss="triplet"), "unused", "unused")


def test_resume_and_overwrite_guards(trained, data, tmp_path):
    out, _ = trained
    with pytest.raises(ArtalignError, match="--resume"):
        train_clip(micro_cfg(), data, out)
    with pytest.raises(ArtalignError, match="no checkpoint"):
        train_clip(micro_cfg(), data, tmp_path / "fresh", resume=True)
    with pytest.raises(ArtalignError, match="batch_size"):
        train_clip(micro_cfg(batch_size=64), data, tmp_path / "big")


# ----------------------------------------------------------------------------- command line


def test_cli_train_and_eval_clip(data, tmp_path):
    from typer.testing import CliRunner

    from base_models.cli_base import app as base_app

    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        base_app,
        [
            "train-clip",
            "--data",
            str(data),
            "--out",
            str(out),
            "--preset",
            "micro",
            "eval_n=8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / WEIGHTS_FILE).is_file() and "zero_shot_colour" in result.output
    result = runner.invoke(base_app, ["eval-clip", "--model", str(out), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["eval_n"] == 1000
