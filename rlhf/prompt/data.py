"""The rewriter's training data: (short -> rich) pairs and short prompts, from attribute records.

Each record of the data set's metadata.jsonl is a scene; `short_and_rich` turns it into a short
prompt a user might type and the full caption of the same scene (base_models.world.short_prompts).
Scenes with the reserved unsafe shape are left out: the rewriter should never learn to add one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.world.short_prompts import scene_from_record, short_and_rich

SEPARATOR = " =>"


def query(prompt: str, separator: str = SEPARATOR) -> str:
    """The text the language model continues: the user's prompt and the separator."""
    return prompt.strip() + separator


def read_records(data: str | Path) -> list[dict[str, Any]]:
    """The attribute records of a data set folder (metadata.jsonl), safe scenes only."""
    path = Path(data) / "metadata.jsonl"
    if not path.is_file():
        raise ArtalignError(f"no {path}: point data= at a folder written by `artalign data make`")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ArtalignError(
                f"{path}:{n} is not JSON ({e.msg}); fix or remove the line"
            ) from None
        if row.get("objects") and not row.get("unsafe"):
            records.append(row)
    if not records:
        raise ArtalignError(f"{path} holds no records with attributes (objects, background, style)")
    return records


def make_pairs(records: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, str]]:
    """`n` pairs {"short", "rich"}: records drawn in a shuffled cycle, each with fresh choices."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(records)) for _ in range(-(-n // len(records)))])
    pairs = []
    for i in order[:n]:
        short, rich = short_and_rich(scene_from_record(records[int(i)]), rng)
        pairs.append({"short": short, "rich": rich})
    return pairs


def sft_rows(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    """TRL's prompt-completion rows: the loss falls on the rewrite only."""
    return [{"prompt": query(p["short"]), "completion": " " + p["rich"]} for p in pairs]


def grpo_rows(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    """TRL's prompt-only rows, with the user's prompt as an extra column for the reward."""
    return [{"prompt": query(p["short"]), "user_prompt": p["short"]} for p in pairs]
