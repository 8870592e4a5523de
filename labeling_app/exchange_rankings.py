"""JSONL rankings in the ImageReward style: one line per judgment.

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
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path
from labeling_app.exchange import Importer, ImportSummary, iso, selected_judgments, to_timestamp
from labeling_app.store import Store
from labeling_app.store.answers import as_ranks, order_of


def export_rankings(
    store: Store, out: str | Path, batch: str | None = None, include_gold: bool = False
) -> int:
    """Write one JSON line per judgment; return the number of lines."""
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
            "prompt": j.prompt, "kind": j.kind,
            "generations": [os.path.relpath(im.path, base) for im in ims],
            "image_hashes": [im.sha256 for im in ims],
            "ranking": as_ranks(j.kind, j.answer) or [1] * len(ims),
            "choice": j.answer.get("choice"), "both_bad": both_bad,
            "rater": j.rater_name, "user_id": j.rater_id, "ratings": j.answer.get("ratings"),
            "created_at": iso(j.created_at), "seconds": j.seconds,
            "models": [im.model for im in ims], "seeds": [im.seed for im in ims],
            "judgment_id": j.id, "task_id": j.task_id, "batch": names[j.batch_id],
            "gold": j.gold is not None,
        }  # fmt: skip
        lines.append(json.dumps(record) + "\n")
    with atomic_path(out) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def _answer(line: dict[str, Any], kind: str, n: int, where: str) -> dict[str, Any]:
    if kind == "pair" and line.get("choice"):
        answer: dict[str, Any] = {"choice": line["choice"]}
    else:
        ranking = line.get("ranking")
        if not isinstance(ranking, list) or len(ranking) != n:
            raise ArtalignError(f"{where}: 'ranking' must list one rank per generation")
        if kind == "pair":
            a, b = order_of(ranking)
            tie = "both_bad" if line.get("both_bad") else "tie"
            answer = {"choice": "left" if a < b else "right" if b < a else tie}
        else:
            answer = {"ranks": order_of(ranking)}
    if line.get("ratings"):
        answer["ratings"] = line["ratings"]
    return answer


def _image(path_text: Any, base: Path, expected: str | None, where: str) -> bytes:
    if not isinstance(path_text, str) or not path_text:
        raise ArtalignError(f"{where}: each generation must be an image path")
    path = Path(path_text) if Path(path_text).is_absolute() else base / path_text
    if not path.is_file():
        raise ArtalignError(f"{where}: image {path} does not exist")
    data = path.read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ArtalignError(f"{where}: {path} does not match its image_hashes entry")
    return data


def import_rankings(store: Store, path: str | Path, batch_name: str | None = None) -> ImportSummary:
    """Read JSONL rankings into a new batch (pair lines make pair tasks, others rank tasks)."""
    path = Path(path)
    if not path.is_file():
        raise ArtalignError(f"{path} does not exist; pass a .jsonl file")
    base = path.resolve().parent
    imp = Importer(store, batch_name or f"import-{path.stem}",
                   {"source": str(path), "format": "rankings"})  # fmt: skip
    with path.open(encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            where = f"{path}:{n}"
            try:
                line = json.loads(text)
            except json.JSONDecodeError as e:
                raise ArtalignError(f"{where}: not JSON ({e})") from None
            prompt = line.get("prompt") or line.get("caption")
            gens = line.get("generations")
            if not isinstance(prompt, str) or not isinstance(gens, list) or len(gens) < 2:
                raise ArtalignError(f"{where}: needs 'prompt' and at least 2 'generations'")
            kind = line.get("kind") or ("pair" if line.get("choice") else "rank")
            if kind not in ("pair", "rank") or (kind == "pair" and len(gens) != 2):
                raise ArtalignError(f"{where}: kind must be 'rank', or 'pair' with 2 images")
            hashes = line.get("image_hashes") or [None] * len(gens)
            models = line.get("models") or [None] * len(gens)
            seeds = line.get("seeds") or [None] * len(gens)
            keys = [
                imp.add_image(_image(g, base, h, where), h, {"model": m, "seed": s})
                for g, h, m, s in zip(gens, hashes, models, seeds, strict=True)
            ]
            rater = line.get("rater") or line.get("user_id")
            imp.add(prompt, kind, keys, {
                "rater": str(rater) if rater is not None else "imported",
                "answer": _answer(line, kind, len(gens), where),
                "created_at": to_timestamp(line.get("created_at")),
                "seconds": line.get("seconds"),
            })  # fmt: skip
    return imp.commit()
