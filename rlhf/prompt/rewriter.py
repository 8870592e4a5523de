"""`PromptRewriter`: load a trained rewriter folder and expand prompts (greedy, deterministic).

The folder holds a transformers causal LM and tokenizer (`save_pretrained`, safetensors) and
`rewriter.json` (the separator between prompt and rewrite, and the decoding limits). With
`keep_intent` (the default), a greedy rewrite that drops or contradicts an attribute of the user's
prompt (`rlhf.prompt.keep`) is replaced by the first of up to `candidates - 1` sampled rewrites
that keeps everything (seeded, so the output is repeatable), and failing that by the user's own
prompt: a rewrite never loses what was asked for. `last_fallbacks` counts the prompts of the
last call that fell back to themselves.
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


def check_candidates(candidates: int) -> None:
    if candidates < 1:
        raise ArtalignError(
            f"--candidates must be >= 1 (1: the greedy rewrite only), got {candidates}"
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
        candidates: int = 8,
        seed: int = 0,
    ):
        check_candidates(candidates)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.separator, self.max_new_tokens = separator, max_new_tokens
        self.keep_intent, self.candidates, self.seed = keep_intent, candidates, seed
        self.last_fallbacks = 0

    @classmethod
    def load(
        cls, path: str | Path, keep_intent: bool = True, candidates: int = 8, seed: int = 0
    ) -> PromptRewriter:
        check_candidates(candidates)  # before loading anything
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
            candidates,
            seed,
        )

    def _room(self) -> int:
        """Longest query (tokens) that leaves room for a rewrite in the model's context."""
        limit = getattr(self.model.config, "n_positions", None) or getattr(
            self.model.config, "max_position_embeddings", 1 << 20
        )
        return int(limit) - self.max_new_tokens

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], batch_size: int = 64, sample: bool = False
    ) -> list[str]:
        """The model's rewrite of each prompt (greedy, or one sample), without the intent check.

        A prompt too long for the model's context is returned as it is (it needs no expanding).
        """
        tok, room = self.tokenizer, self._room()
        queries = [query(p, self.separator) for p in prompts]
        encoded = tok(queries)["input_ids"]  # tokenized once, padded per batch below
        fits = [i for i, ids in enumerate(encoded) if len(ids) <= room]
        out = [p.strip() for p in prompts]
        for start in range(0, len(fits), batch_size):
            idx = fits[start : start + batch_size]
            enc = tok.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
            enc = enc.to(self.model.device)
            ids = self.model.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(idx, texts, strict=True):
                out[i] = text.strip()
        return out

    def rewrite(self, prompts: Sequence[str], batch_size: int = 64) -> list[str]:
        """Rewrites; with keep_intent, each prompt's greedy rewrite, else the first of
        `candidates - 1` samples that keeps everything the prompt asks for, else the prompt."""
        prompts = [str(p) for p in prompts]
        if any(not p.strip() for p in prompts):
            raise ArtalignError("an empty prompt cannot be rewritten; give some words")
        rewrites = self.generate(prompts, batch_size)
        if not self.keep_intent:
            return rewrites
        todo = [
            i
            for i, (p, r) in enumerate(zip(prompts, rewrites, strict=True))
            if not r or not keeps_intent(p, r)
        ]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for _ in range(self.candidates - 1):
                if not todo:
                    break
                drawn = self.generate([prompts[i] for i in todo], batch_size, sample=True)
                for i, r in zip(list(todo), drawn, strict=True):
                    if r and keeps_intent(prompts[i], r):
                        rewrites[i] = r
                        todo.remove(i)
        for i in todo:
            rewrites[i] = prompts[i]
        self.last_fallbacks = len(todo)
        return rewrites
