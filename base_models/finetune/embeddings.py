"""Textual-inversion tokens: add a new token, save its embedding, load it into a Generator.

The saved file is diffusers' format, `learned_embeds.safetensors` = {token: (1, D) float32}, so
`StableDiffusionPipeline.load_textual_inversion(path)` loads it, and `load_embedding` does the
same for artalign's `Generator` (add the token to the tokenizer, grow the text encoder's input
embeddings by one row, write the row), so both give the same image for the same seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path

EMBEDDING_FILE = "learned_embeds.safetensors"  # diffusers' TEXT_INVERSION_NAME_SAFE


def check_new_token(tokenizer: Any, token: str) -> None:
    """Refuse a token the tokenizer already knows: a new embedding needs a new token.

    'sks' and 'style' are words of CLIP's vocabulary (one BPE token each), so they are refused;
    '<sks>' is not one token and is free.
    """
    if not token or any(c.isspace() for c in token):
        raise ArtalignError(f"token {token!r} must be one word without spaces, e.g. <sks>")
    pieces = tokenizer.tokenize(token)
    if token in tokenizer.get_vocab() or len(pieces) == 1:
        raise ArtalignError(
            f"token {token!r} is already in the tokenizer's vocabulary; textual inversion needs "
            "a new token, e.g. <sks>"
        )


def _grow_embeddings(tokenizer: Any, text_encoder: Any, token: str) -> int:
    """Add `token` to the tokenizer and a row for it to the text encoder; return its id."""
    device = text_encoder.get_input_embeddings().weight.device
    tokenizer.add_tokens(token)
    token_id = tokenizer.convert_tokens_to_ids(token)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # row set next
    text_encoder.to(device).requires_grad_(False)
    ids = tokenizer(f"{token} style", add_special_tokens=False).input_ids
    if token_id not in ids:
        raise ArtalignError(
            f"the tokenizer does not keep token {token!r} whole (it lower-cases or splits it); "
            "use a lower-case token such as <sks>"
        )
    return token_id


def add_token(tokenizer: Any, text_encoder: Any, token: str, init_word: str) -> int:
    """Add `token`, its embedding initialised to `init_word`'s (one token); return its id."""
    check_new_token(tokenizer, token)
    init_ids = tokenizer(init_word, add_special_tokens=False).input_ids
    if len(init_ids) != 1:
        raise ArtalignError(
            f"init_word {init_word!r} is {len(init_ids)} tokens; pick a word that is one token, "
            "e.g. style"
        )
    token_id = _grow_embeddings(tokenizer, text_encoder, token)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[token_id] = weight[init_ids[0]]
    return token_id


def save_embedding(path: str | Path, token: str, vector: torch.Tensor) -> Path:
    """Write {token: (1, D)} to `path` (safetensors, atomically), as diffusers saves TI."""
    from safetensors.torch import save_file

    path = Path(path)
    tensor = vector.detach().float().cpu().reshape(1, -1).contiguous()
    with atomic_path(path) as tmp:
        save_file({token: tensor}, str(tmp))
    return path


def load_embedding(gen: Any, path: str | Path, token: str | None = None) -> str:
    """Load a textual-inversion file (or a folder holding learned_embeds.safetensors) into a
    Generator; `token` renames the saved token. Returns the token to put in prompts."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / EMBEDDING_FILE
    if not path.is_file():
        raise ArtalignError(f"embedding file {path} does not exist; pass {EMBEDDING_FILE}")
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ArtalignError(f"cannot read embedding {path} ({e}); pass a .safetensors file") from e
    if len(state) != 1:
        raise ArtalignError(
            f"{path} holds {len(state)} tensors; a textual-inversion file holds one {{token: "
            "embedding}"
        )
    saved_token, vector = next(iter(state.items()))
    token = token or saved_token
    if vector.ndim > 2 or (vector.ndim == 2 and vector.shape[0] != 1):
        raise ArtalignError(
            f"{path} holds a multi-vector embedding {tuple(vector.shape)}; "
            "only one vector per token is supported"
        )
    weight = gen.text_encoder.get_input_embeddings().weight
    if vector.shape[-1] != weight.shape[-1]:
        raise ArtalignError(
            f"embedding {path} has width {vector.shape[-1]} but this text encoder's is "
            f"{weight.shape[-1]}; it was trained for another model"
        )
    check_new_token(gen.tokenizer, token)
    token_id = _grow_embeddings(gen.tokenizer, gen.text_encoder, token)
    weight = gen.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[token_id] = vector.reshape(-1).to(weight.device, weight.dtype)
    return token
