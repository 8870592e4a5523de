"""The CLIP text tower exported as a transformers CLIPTextModel + CLIPTokenizer (SD 2 style)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from base_models.clip import load_clip, model_config, save_clip
from base_models.clip.train import build_model
from base_models.errors import ArtalignError
from base_models.text_encoder import PAD_ID, export_text_encoder, open_clip_token_states

CAPTIONS = [
    "a large red circle and a small blue square on a white background, striped style",
    "",
    "Two  GREEN triangles; it's 3 o'clock (dotted style)",
    "circle " * 60,  # longer than the context: both truncate and end with the eos token
]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A random micro CLIP saved in open_clip's format (as `artalign base train-clip` does)."""
    torch.manual_seed(0)
    cfg = model_config("artalign-micro")
    return save_clip(build_model(cfg).eval(), cfg, tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture(scope="module")
def exported(clip_folder, tmp_path_factory):
    out = export_text_encoder(clip_folder, tmp_path_factory.mktemp("export") / "sd")
    clip, _, oc_tokenizer = load_clip(clip_folder)
    hf_model = CLIPTextModel.from_pretrained(out / "text_encoder", local_files_only=True).eval()
    hf_tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer", local_files_only=True)
    return out, clip, oc_tokenizer, hf_model, hf_tokenizer


def _hf_ids(tokenizer, texts):
    return tokenizer(
        texts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def test_token_ids_equal_open_clip(exported):
    _, _, oc_tokenizer, _, hf_tokenizer = exported
    assert hf_tokenizer.model_max_length == 48
    assert hf_tokenizer.pad_token_id == PAD_ID == 0
    assert torch.equal(_hf_ids(hf_tokenizer, CAPTIONS), oc_tokenizer(CAPTIONS))


def test_last_hidden_state_equals_open_clip_token_states(exported):
    _, clip, oc_tokenizer, hf_model, _ = exported
    ids = oc_tokenizer(CAPTIONS)
    with torch.no_grad():
        ours = hf_model(ids).last_hidden_state
        theirs = open_clip_token_states(clip, ids)
    assert ours.shape == (len(CAPTIONS), 48, 32)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert theirs.std() > 0.1  # not a degenerate comparison


def test_export_files_and_config(exported):
    out, clip, _, hf_model, _ = exported
    assert (out / "text_encoder" / "model.safetensors").is_file()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (out / "tokenizer" / name).is_file()
    config = json.loads((out / "text_encoder" / "config.json").read_text())
    assert config["hidden_act"] == "gelu"  # open_clip's default nn.GELU, not quick_gelu
    assert config["eos_token_id"] == 49407
    assert config["max_position_embeddings"] == 48
    assert hf_model.config.num_hidden_layers == len(clip.transformer.resblocks)


def test_export_replaces_an_earlier_export(clip_folder, tmp_path):
    torch.manual_seed(1)
    other = build_model(model_config("artalign-micro")).eval()
    export_text_encoder(other, tmp_path)
    export_text_encoder(clip_folder, tmp_path)
    hf = CLIPTextModel.from_pretrained(tmp_path / "text_encoder", local_files_only=True)
    clip, _, _ = load_clip(clip_folder)
    torch.testing.assert_close(hf.embeddings.token_embedding.weight, clip.token_embedding.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text_encoder", "tokenizer"]


def test_non_clip_folder_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ArtalignError, match="open_clip_config.json"):
        export_text_encoder(tmp_path, tmp_path / "out")
    with pytest.raises(ArtalignError, match="text tower"):
        export_text_encoder(torch.nn.Linear(2, 2), tmp_path / "out")
