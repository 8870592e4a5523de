"""JSONL rankings in the ImageReward style: export, and the one reader of the layout (the store
import and the reward loader `rlhf.reward.loaders.load_rankings` both read through
`read_rankings`).

A line: {"prompt", "generations": [image paths, relative to the JSONL file], "image_hashes":
[SHA-256], "ranking": [rank of each generation, 1 = best, ties equal], "kind": "pair" |
"rank", "choice" (pairs only: left | right | tie | both_bad), "both_bad", "rater",
"user_id", "ratings", "created_at" (ISO 8601), "seconds", "models", "seeds", "judgment_id",
"task_id", "batch", "gold"}. A pair is a 2-way ranking ("both bad": [1, 1] with both_bad).
Import needs only "prompt" (or "caption"), "generations" and "ranking" (or "choice"); paths
are resolved against the JSONL file's folder, and "image_hashes", when given, must match.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path
from labeling_app.exchange.common import (
    ExportSummary,
    Importer,
    ImportSummary,
    existing_file,
    iso,
    rater_name,
    require_prompt,
    selected_judgments,
    to_timestamp,
)
from labeling_app.store import Store
from labeling_app.store.answers import CHOICES, as_ranks, order_of


def export_rankings(
    store: Store, out: str | Path, batch: str | None = None, include_gold: bool = False
) -> ExportSummary:
    """Write one JSON line per judgment ("both bad" included, flagged); return the line count."""
    out = Path(out)
    judgments = selected_judgments(store, batch, include_gold)
    images = store.images([i for j in judgments for i in j.image_ids])
    names = {b.id: b.name for b in store.batches()}
    base = out.resolve().parent
    lines = []
    for j in judgments:
        ims = [images[i] for i in j.image_ids]
        both_bad = j.answer.get("choice") == "both_bad"
        record = {
            "prompt": j.prompt,
            "kind": j.kind,
            "generations": [os.path.relpath(im.path, base) for im in ims],
            "image_hashes": [im.sha256 for im in ims],
            "ranking": as_ranks(j.kind, j.answer) or [1] * len(ims),
            "choice": j.answer.get("choice"),
            "both_bad": both_bad,
            "rater": j.rater_name,
            "user_id": j.rater_id,
            "ratings": j.answer.get("ratings"),
            "created_at": iso(j.created_at),
            "seconds": j.seconds,
            "models": [im.model for im in ims],
            "seeds": [im.seed for im in ims],
            "judgment_id": j.id,
            "task_id": j.task_id,
            "batch": names[j.batch_id],
            "gold": j.gold is not None,
        }
        lines.append(json.dumps(record) + "\n")
    with atomic_path(out) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return ExportSummary(rows=len(lines))


@dataclass(frozen=True)
class RankingLine:
    """One checked line: a pair (with its choice) or a k-way ranking of existing images."""

    where: str  # "FILE:LINE", for error messages
    prompt: str
    kind: str  # "pair" | "rank"
    images: tuple[Path, ...]  # the generations, joined to the JSONL file's folder
    hashes: tuple[str | None, ...]  # image_hashes, None where not given
    choice: str | None  # pairs: left | right | tie | both_bad (from "ranking" when not given)
    ranking: tuple[float, ...] | None  # ranks: each generation's, 1 = best; None for a pair
    both_bad: bool
    rater: str | None  # rater, else user_id
    ratings: Any
    created_at: float | None
    seconds: float | None
    models: tuple[Any, ...]
    seeds: tuple[Any, ...]
    gold: bool

    def image_bytes(self, i: int) -> bytes:
        """The bytes of generation `i`; ArtalignError when they do not match its hash."""
        data = self.images[i].read_bytes()
        if self.hashes[i] is not None and hashlib.sha256(data).hexdigest() != self.hashes[i]:
            raise ArtalignError(
                f"{self.where}: {self.images[i]} does not match its image_hashes entry"
            )
        return data


def _per_image(line: dict[str, Any], key: str, n: int, where: str) -> tuple[Any, ...]:
    values = line.get(key) or [None] * n
    if not isinstance(values, list) or len(values) != n:
        raise ArtalignError(f"{where}: '{key}' must list one entry per generation")
    return tuple(values)


def _ranking(line: dict[str, Any], n: int, where: str) -> tuple[float, ...]:
    ranking = line.get("ranking")
    if not isinstance(ranking, list):
        raise ArtalignError(f"{where}: needs 'ranking' (or a pair 'choice')")
    if len(ranking) != n:
        raise ArtalignError(f"{where}: 'ranking' must list one rank per generation")
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ranking):
        raise ArtalignError(f"{where}: ranks must be numbers, got {ranking}")
    return tuple(ranking)


def _line(line: Any, base: Path, where: str) -> RankingLine:
    """The checked record of a parsed JSON line."""
    if not isinstance(line, dict):
        raise ArtalignError(f"{where}: each line must be a JSON object")
    gens = line.get("generations")
    if not isinstance(gens, list) or len(gens) < 2:
        raise ArtalignError(f"{where}: needs a list of at least 2 'generations'")
    prompt = require_prompt(line.get("prompt") or line.get("caption"), where)
    kind = line.get("kind") or ("pair" if line.get("choice") else "rank")
    if kind not in ("pair", "rank") or (kind == "pair" and len(gens) != 2):
        raise ArtalignError(f"{where}: kind must be 'rank', or 'pair' with 2 images")
    images = []
    for g in gens:
        if not isinstance(g, str) or not g:
            raise ArtalignError(f"{where}: each generation must be an image path")
        path = Path(g) if Path(g).is_absolute() else base / g
        if not path.is_file():
            raise ArtalignError(f"{where}: image {path} does not exist")
        images.append(path)
    choice, ranking = (line.get("choice") or None) if kind == "pair" else None, None
    if choice is not None and choice not in CHOICES:
        raise ArtalignError(f"{where}: 'choice' must be one of {', '.join(CHOICES)}")
    if kind == "pair" and not choice:
        a, b = order_of(list(_ranking(line, 2, where)))
        choice = "left" if a < b else "right" if b < a else "tie"
        if choice == "tie" and line.get("both_bad"):
            choice = "both_bad"
    elif kind == "rank":
        ranking = _ranking(line, len(gens), where)
    return RankingLine(
        where=where,
        prompt=prompt,
        kind=kind,
        images=tuple(images),
        hashes=_per_image(line, "image_hashes", len(gens), where),
        choice=choice,
        ranking=ranking,
        both_bad=choice == "both_bad" or bool(line.get("both_bad")),
        rater=rater_name(line.get("rater") or line.get("user_id")),
        ratings=line.get("ratings"),
        created_at=to_timestamp(line.get("created_at")),
        seconds=line.get("seconds"),
        models=_per_image(line, "models", len(gens), where),
        seeds=_per_image(line, "seeds", len(gens), where),
        gold=bool(line.get("gold")),
    )


def read_rankings(path: str | Path) -> list[RankingLine]:
    """The checked lines of a JSONL rankings file (blank lines skipped); ArtalignError naming
    the line for a bad one."""
    path = existing_file(path, "a .jsonl rankings file")
    base = path.resolve().parent
    lines = []
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            where = f"{path}:{n}"
            try:
                line = json.loads(text)
            except json.JSONDecodeError as e:
                raise ArtalignError(f"{where}: not JSON ({e})") from None
            lines.append(_line(line, base, where))
    return lines


def import_rankings(store: Store, path: str | Path, batch_name: str | None = None) -> ImportSummary:
    """Read JSONL rankings into a new batch (pair lines make pair tasks, others rank tasks)."""
    lines = read_rankings(path)
    path = Path(path)
    imp = Importer(
        store, batch_name or f"import-{path.stem}", {"source": str(path), "format": "rankings"}
    )
    for line in lines:
        keys = [
            imp.add_image(
                line.image_bytes(i),
                line.hashes[i],
                {"model": line.models[i], "seed": line.seeds[i]},
            )
            for i in range(len(line.images))
        ]
        if line.ranking is None:
            answer: dict[str, Any] = {"choice": line.choice}
        else:
            answer = {"ranks": order_of(list(line.ranking))}
        if line.ratings:
            answer["ratings"] = line.ratings
        imp.add(
            line.prompt,
            line.kind,
            keys,
            {
                "rater": line.rater if line.rater is not None else "imported",
                "answer": answer,
                "created_at": line.created_at,
                "seconds": line.seconds,
            },
        )
    return imp.commit()
