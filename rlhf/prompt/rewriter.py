"""`PromptRewriter`: load a trained rewriter folder and expand prompts (greedy, deterministic).

The folder holds a transformers causal LM and tokenizer (`save_pretrained`, safetensors) and
`rewriter.json` (the separator between prompt and rewrite, and the decoding limits). With
`keep_intent` (the default), a rewrite that drops or contradicts an attribute of the user's prompt
(`rlhf.prompt.keep`) is replaced by the user's own prompt, so a rewrite never loses what was asked
for; `last_fallbacks` says how many prompts of the last call fell back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from rlhf.prompt.data import SEPARATOR, query
from rlhf.prompt.keep import keeps_intent
from rlhf.prompt.lm import load_lm

META = "rewriter.json"


def write_meta(path: str | Path, max_new_tokens: int) -> None:
    write_json(
        Path(path) / META,
        {"format": "artalign-rewriter", "separator": SEPARATOR, "max_new_tokens": max_new_tokens},
    )


class PromptRewriter:
    """Expand short prompts with a trained language model."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        separator: str = SEPARATOR,
        max_new_tokens: int = 48,
        keep_intent: bool = True,
    ):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.separator, self.max_new_tokens = separator, max_new_tokens
        self.keep_intent = keep_intent
        self.last_fallbacks = 0

    @classmethod
    def load(cls, path: str | Path, keep_intent: bool = True) -> PromptRewriter:
        path = Path(path)
        if not (path / META).is_file() and (path / "rewriter" / META).is_file():
            path = path / "rewriter"  # a run folder of `artalign prompt train`
        meta_path = path / META
        if not meta_path.is_file():
            raise ArtalignError(
                f"{path} is not a prompt rewriter (no {META}); train one with "
                "`artalign prompt train --out DIR`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model, tokenizer = load_lm(path)
        return cls(
            model,
            tokenizer,
            meta.get("separator", SEPARATOR),
            int(meta.get("max_new_tokens", 48)),
            keep_intent,
        )

    def _room(self) -> int:
        """Longest query (tokens) that leaves room for a rewrite in the model's context."""
        limit = getattr(self.model.config, "n_positions", None) or getattr(
            self.model.config, "max_position_embeddings", 1 << 20
        )
        return int(limit) - self.max_new_tokens

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], batch_size: int = 64) -> list[str]:
        """The model's greedy rewrite of each prompt, without the intent check.

        A prompt too long for the model's context is returned as it is (it needs no expanding).
        """
        tok, room = self.tokenizer, self._room()
        queries = [query(p, self.separator) for p in prompts]
        fits = [i for i, q in enumerate(queries) if len(tok(q)["input_ids"]) <= room]
        out = [p.strip() for p in prompts]
        for start in range(0, len(fits), batch_size):
            idx = fits[start : start + batch_size]
            enc = tok([queries[i] for i in idx], return_tensors="pt", padding=True)
            enc = enc.to(self.model.device)
            ids = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(idx, texts, strict=True):
                out[i] = text.strip()
        return out

    def rewrite(self, prompts: Sequence[str], batch_size: int = 64) -> list[str]:
        """Rewrites; with keep_intent, one that loses part of the prompt is the prompt itself."""
        prompts = [str(p) for p in prompts]
        if any(not p.strip() for p in prompts):
            raise ArtalignError("an empty prompt cannot be rewritten; give some words")
        rewrites = self.generate(prompts, batch_size)
        self.last_fallbacks = 0
        if self.keep_intent:
            for i, (p, r) in enumerate(zip(prompts, rewrites, strict=True)):
                if not r or not keeps_intent(p, r):
                    rewrites[i] = p
                    self.last_fallbacks += 1
        return rewrites
