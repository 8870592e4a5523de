"""The rewriter's language model: a GPT-2 trained from scratch here, or any local causal LM.

From scratch, the tokenizer is a byte-level BPE (the GPT-2 scheme, so any text encodes) trained on
the pair texts with the `tokenizers` library, and the model is a transformers `GPT2LMHeadModel`
of the configured size. A local checkpoint (`init=DIR`) is loaded with `AutoModelForCausalLM` and
`AutoTokenizer`; a hub id fails fast (no downloads at run time). Either way the folder is saved
with `save_pretrained` (safetensors), so transformers and TRL load it as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError

EOS = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` learned from `texts`; EOS doubles as pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, padding_side="left"
    )


def new_gpt2(tokenizer: Any, n_layer: int, n_embd: int, n_head: int, n_positions: int) -> Any:
    """A randomly initialised GPT-2 sized for `tokenizer`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # no dropout: a small model on plenty of pairs does not overfit, and GRPO's log-probs
        # must be those of the policy that sampled (nanoGPT pretrains with dropout 0 too)
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(cfg)


def load_lm(path: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a local causal-LM folder; the tokenizer pads on the left."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ArtalignError(
            f"{path} is not a local language-model folder (no config.json); give a folder "
            "written by `artalign prompt train` or by transformers' save_pretrained"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True
        )
    except OSError as e:
        raise ArtalignError(f"cannot load the language model in {path}: {e}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_lm(model: Any, tokenizer: Any, path: str | Path) -> None:
    """Write model (safetensors) and tokenizer to `path` (the caller makes it atomic)."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
