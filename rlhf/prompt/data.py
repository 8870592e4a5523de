"""The rewriter's training data: (short -> rich) pairs and short prompts.

`data=` is either a data set folder or a JSONL file of pairs:
- a folder: each record of its metadata.jsonl is a scene, and `short_and_rich` turns it into a
  short prompt a user might type and the full caption of the same scene
  (base_models.world.short_prompts), fresh choices every draw. Scenes with the reserved unsafe
  shape are left out: the rewriter should never learn to add one;
- a `.jsonl` file of {"short": ..., "rich": ...} rows (e.g. user prompts and the engineered
  prompts of a Stable Diffusion community, Promptist's data), drawn in a shuffled cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.io_utils import read_jsonl
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
    records = [row for _, row in read_jsonl(path) if row.get("objects") and not row.get("unsafe")]
    if not records:
        raise ArtalignError(f"{path} holds no records with attributes (objects, background, style)")
    return records


def read_pair_file(path: str | Path) -> list[dict[str, str]]:
    """The {"short", "rich"} rows of a JSONL file."""
    path = Path(path)
    rows = []
    for n, row in read_jsonl(path):
        short, rich = str(row.get("short", "")).strip(), str(row.get("rich", "")).strip()
        if not (short and rich):
            raise ArtalignError(f'{path}:{n} needs non-empty "short" and "rich" text fields')
        rows.append({"short": short, "rich": rich})
    if not rows:
        raise ArtalignError(f"{path} holds no pairs; write one JSON object a line")
    return rows


def _cycle(rows: list[dict[str, str]], n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(-(-n // len(rows)))])
    return [rows[int(i)] for i in order[:n]]


def load_pairs(
    data: str | Path, n: int, seed: int, n_heldout: int = 0
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(`n` training pairs, `n_heldout` held-out pairs) from a data set folder or a pair file.

    From a file, the held-out pairs are rows the training pairs never use.
    """
    path = Path(data)
    if path.is_file():
        rows = read_pair_file(path)
        if n_heldout and len(rows) < 2 * n_heldout:
            raise ArtalignError(
                f"{path} has {len(rows)} pairs, too few to hold out {n_heldout}; add pairs or "
                "lower heldout_share"
            )
        rng = np.random.default_rng(seed)
        rows = [rows[int(i)] for i in rng.permutation(len(rows))]
        return _cycle(rows[n_heldout:], n, rng), rows[:n_heldout]
    pairs = make_pairs(read_records(path), n + n_heldout, seed)
    return pairs[n_heldout:], pairs[:n_heldout]


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
