"""Export an open_clip CLIP's text tower as the generator's text encoder, the way SD 2 did.

Stable Diffusion 2 conditions its UNet on OpenCLIP's per-token text states, shipped as a
transformers `CLIPTextModel` + `CLIPTokenizer`. This module does the same for artalign's CLIP:

    token_embedding, positional_embedding  -> embeddings.token_embedding / position_embedding
    resblocks[i].attn.in_proj (q|k|v rows) -> encoder.layers[i].self_attn.q_proj / k_proj / v_proj
    resblocks[i].attn.out_proj             -> ...self_attn.out_proj
    resblocks[i].ln_1 / ln_2               -> ...layer_norm1 / layer_norm2
    resblocks[i].mlp.c_fc / c_proj         -> ...mlp.fc1 / fc2
    ln_final                               -> final_layer_norm

Both apply a causal mask, so `CLIPTextModel(ids).last_hidden_state` equals
`open_clip_token_states(model, ids)`. The tokenizer is built from open_clip's bundled BPE file
with "!" (id 0) as the pad token, so padded ids equal open_clip's zero padding exactly.
As in SD 2, a literal "!" in a prompt then also becomes id 0 (open_clip: "!</w>", 256);
captions without "!" tokenize identically.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from open_clip.tokenizer import bytes_to_unicode, default_bpe
from open_clip.transformer import QuickGELU
from torch import nn

from base_models.clip import load_clip
from base_models.errors import ArtalignError
from base_models.io_utils import replace_dir

TEXT_ENCODER_DIR = "text_encoder"
TOKENIZER_DIR = "tokenizer"
BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "!"
BOS_ID, EOS_ID, PAD_ID = 49406, 49407, 0
_N_MERGES = 49152 - 256 - 2  # the merges open_clip's SimpleTokenizer reads


def open_clip_token_states(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-token text states after ln_final, (B, T, width): what the UNet conditions on.

    The same computation as open_clip's `CLIP.encode_text` before pooling and projection.
    """
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)  # (B, T, width)
    x = x + model.positional_embedding.to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask)
    return model.ln_final(x)


def _activation_name(act: nn.Module) -> str:
    if isinstance(act, QuickGELU):
        return "quick_gelu"
    if isinstance(act, nn.GELU):
        return "gelu" if act.approximate == "none" else "gelu_pytorch_tanh"
    raise ArtalignError(
        f"text tower activation {type(act).__name__} has no CLIPTextModel equivalent"
    )


def _check_native_tower(model: nn.Module) -> None:
    """Refuse towers CLIPTextModel cannot express (HF towers, no causal mask, layer scale, ...)."""
    needed = ("transformer", "token_embedding", "positional_embedding", "ln_final", "attn_mask")
    if not all(hasattr(model, name) for name in needed):
        raise ArtalignError(
            f"{type(model).__name__} has no native open_clip text tower; export needs an open_clip "
            "CLIP with its own text transformer (not an HF text tower or a CustomTextCLIP)"
        )
    if model.attn_mask is None:
        raise ArtalignError(
            "this text tower has no causal mask (no_causal_mask); CLIPTextModel is causal, so "
            "it cannot be exported"
        )
    for block in model.transformer.resblocks:
        plain = all(isinstance(getattr(block, a, None), nn.Identity) for a in ("ls_1", "ls_2"))
        if not plain or not hasattr(block.attn, "in_proj_weight") or hasattr(block, "ln_1_kv"):
            raise ArtalignError(
                "text tower blocks use layer scale or custom attention; only open_clip's "
                "default ResidualAttentionBlock can be exported"
            )


def clip_text_config(model: nn.Module):
    """The transformers `CLIPTextConfig` that describes `model`'s text tower."""
    from transformers import CLIPTextConfig

    _check_native_tower(model)
    block = model.transformer.resblocks[0]
    vocab, width = model.token_embedding.weight.shape
    proj = getattr(model, "text_projection", None)
    proj_dim = proj.shape[-1] if isinstance(proj, torch.Tensor) else width
    return CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=block.mlp.c_fc.out_features,
        projection_dim=int(proj_dim),
        num_hidden_layers=len(model.transformer.resblocks),
        num_attention_heads=block.attn.num_heads,
        max_position_embeddings=model.positional_embedding.shape[0],
        hidden_act=_activation_name(block.mlp.gelu),
        layer_norm_eps=model.ln_final.eps,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )


def text_tower_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """open_clip text-tower weights renamed (and q/k/v split) to CLIPTextModel's file keys.

    Keys carry the "text_model." prefix of every SD text_encoder file: transformers 4.x needs
    it, and 5.x strips it on load.
    """
    p = "text_model."
    sd = {
        p + "embeddings.token_embedding.weight": model.token_embedding.weight,
        p + "embeddings.position_embedding.weight": model.positional_embedding,
        p + "final_layer_norm.weight": model.ln_final.weight,
        p + "final_layer_norm.bias": model.ln_final.bias,
    }
    for i, block in enumerate(model.transformer.resblocks):
        layer = f"{p}encoder.layers.{i}."
        q_w, k_w, v_w = block.attn.in_proj_weight.chunk(3, dim=0)
        q_b, k_b, v_b = block.attn.in_proj_bias.chunk(3, dim=0)
        for name, w, b in (("q_proj", q_w, q_b), ("k_proj", k_w, k_b), ("v_proj", v_w, v_b)):
            sd[f"{layer}self_attn.{name}.weight"] = w
            sd[f"{layer}self_attn.{name}.bias"] = b
        pairs = {
            "self_attn.out_proj": block.attn.out_proj,
            "layer_norm1": block.ln_1,
            "layer_norm2": block.ln_2,
            "mlp.fc1": block.mlp.c_fc,
            "mlp.fc2": block.mlp.c_proj,
        }
        for name, module in pairs.items():
            sd[f"{layer}{name}.weight"] = module.weight
            sd[f"{layer}{name}.bias"] = module.bias
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in sd.items()}


def to_clip_text_model(model: nn.Module):
    """A transformers `CLIPTextModel` (float32, eval mode) with the text tower's weights."""
    from transformers import CLIPTextModel

    hf = CLIPTextModel(clip_text_config(model))
    state = text_tower_state_dict(model)
    own_keys = set(hf.state_dict())
    if not any(k.startswith("text_model.") for k in own_keys):  # transformers 5.x module names
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:  # a bug in the mapping, not bad user input
        raise RuntimeError(f"text tower mapping incomplete: missing {missing}, extra {unexpected}")
    return hf.eval()


@lru_cache(maxsize=1)
def bpe_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """open_clip's BPE vocabulary (ids as its SimpleTokenizer assigns them) and merges.

    Cached: treat the returned objects as read-only.
    """
    with gzip.open(default_bpe()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if vocab[PAD] != PAD_ID or vocab[EOS] != EOS_ID:
        raise RuntimeError("open_clip's BPE file changed: special ids no longer match")
    return vocab, merges  # type: ignore[return-value]


def make_tokenizer(context_length: int):
    """A `CLIPTokenizer` giving open_clip's ids: BPE vocab, eos 49407, pad "!" (id 0)."""
    from transformers import CLIPTokenizer

    vocab, merges = bpe_vocab_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=context_length,
    )


def _save_tokenizer(tokenizer, folder: Path) -> None:
    """save_pretrained plus the classic vocab.json / merges.txt that older loaders read."""
    tokenizer.save_pretrained(str(folder))
    vocab, merges = bpe_vocab_and_merges()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n")
    merge_lines = "\n".join(" ".join(m) for m in merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merge_lines + "\n")


def _save_text_encoder(model: nn.Module, config, folder: Path) -> None:
    """config.json + model.safetensors with SD's key names (what save_pretrained writes in 4.x)."""
    from safetensors.torch import save_file

    config.architectures = ["CLIPTextModel"]
    config.save_pretrained(str(folder))
    save_file(text_tower_state_dict(model), str(folder / "model.safetensors"), {"format": "pt"})


def _load_if_folder(clip: nn.Module | str | Path) -> nn.Module:
    if isinstance(clip, nn.Module):
        return clip

    model, _, tokenizer = load_clip(clip)
    if type(tokenizer).__name__ != "SimpleTokenizer":
        raise ArtalignError(f"CLIP {clip} does not use open_clip's BPE tokenizer; cannot export")
    return model


def export_text_encoder(clip: nn.Module | str | Path, out_dir: str | Path) -> Path:
    """Write `out_dir/text_encoder` (CLIPTextModel, safetensors) and `out_dir/tokenizer`.

    `clip` is an open_clip CLIP model or a CLIP folder (see `base_models.clip.load_clip`).
    The tokenizer's model_max_length is the tower's context length. Each folder is built
    beside its final place and renamed in, so readers never see half an export.
    """
    model = _load_if_folder(clip)
    hf_model = to_clip_text_model(model)
    tokenizer = make_tokenizer(hf_model.config.max_position_embeddings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (TEXT_ENCODER_DIR, TOKENIZER_DIR):
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
        try:
            tmp.chmod(0o755)
            if name == TEXT_ENCODER_DIR:
                _save_text_encoder(model, hf_model.config, tmp)
            else:
                _save_tokenizer(tokenizer, tmp)
            replace_dir(tmp, out_dir / name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return out_dir
