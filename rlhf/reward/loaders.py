"""Loaders of preference data: the label store, Pick-a-Pic parquet and JSONL rankings.

The files are parsed and checked by the labeling app's readers, the same the store import uses
(`read_pickapic` in labeling_app/exchange/pickapic.py, `read_rankings` in
labeling_app/exchange/rankings.py; layouts in docs/labeling_store.md); the loaders turn the
records into a `PreferenceData`, leave out gold tasks and (by default) "both bad" answers and,
with `check`, refuse empty or all-tie data. By default every rater is kept: `train_reward` fits
the rater policy on its training prompts. exclude_raters="flagged" or rater_weights=True fit it
on all the judgments loaded (`apply_rater_policy`): only for data that will not be split into
held-out parts, or the held-out labels decide who is left out of training.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from labeling_app.exchange.common import rater_name, require_prompt
from labeling_app.exchange.pickapic import read_pickapic
from labeling_app.exchange.rankings import read_rankings
from labeling_app.store import SYSTEM, Store
from rlhf.reward.data import (
    BOTH_BAD,
    Pair,
    PreferenceData,
    Ranking,
    apply_rater_policy,
    competition_ranks,
)


class _Builder:
    """Collects images (de-duplicated by path or content hash) and judgments."""

    def __init__(self, source: dict[str, Any], both_bad: str, include_gold: bool) -> None:
        if both_bad not in BOTH_BAD:
            raise ArtalignError(f"both_bad={both_bad!r}; choose one of {', '.join(BOTH_BAD)}")
        self.data = PreferenceData(source=source)
        self.both_bad, self.include_gold = both_bad, include_gold
        self.index: dict[str, int] = {}
        self.dropped: dict[str, int] = defaultdict(int)

    def image(self, ref: str | bytes | Path, name: str, key: str | None = None) -> int:
        if isinstance(ref, Path):
            ref = str(ref)
        if key is None:
            key = hashlib.sha256(ref).hexdigest() if isinstance(ref, bytes) else f"path:{ref}"
        if key not in self.index:
            self.index[key] = len(self.data.images)
            self.data.images.append(ref)
            self.data.names.append(name)
        return self.index[key]

    def keep(self, gold: bool, both_bad: bool) -> bool:
        """False (and counted) for a gold item or, with both_bad="drop", a both-bad answer."""
        if gold and not self.include_gold:
            self.dropped["gold"] += 1
            return False
        if both_bad and self.both_bad == "drop":
            self.dropped["both_bad"] += 1
            return False
        return True

    def pair(self, prompt: Any, a: int, b: int, p_a: float, rater: Any, where: str) -> None:
        prompt = require_prompt(prompt, where)
        self.data.pairs.append(Pair(prompt, a, b, float(p_a), rater_name(rater)))

    def ranking(
        self, prompt: Any, images: list[int], ranks: Sequence[Any], rater: Any, where: str
    ) -> None:
        if len(ranks) != len(images) or len(images) < 2:
            raise ArtalignError(f"{where}: a ranking needs one rank per image (2 or more)")
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ranks):
            raise ArtalignError(f"{where}: ranks must be numbers, got {list(ranks)}")
        self.data.rankings.append(
            Ranking(
                require_prompt(prompt, where),
                tuple(images),
                competition_ranks(ranks),
                rater_name(rater),
            )
        )

    def finish(
        self, exclude_raters: Any, rater_weights: bool, flag_kappa: float, check: bool
    ) -> PreferenceData:
        self.data.source["dropped"] = dict(self.dropped)
        data = apply_rater_policy(
            self.data, exclude_raters, rater_weights, kappa_threshold=flag_kappa
        )
        if check:
            data.check()
        return data


# ----------------------------------------------------------------------------- loaders
def load_from_store(
    db: str | Path,
    batch: str | int | None = None,
    include_gold: bool = False,
    exclude_raters: str | Sequence[str] | None = None,
    both_bad: str = "drop",
    rater_weights: bool = False,
    flag_kappa: float = 0.2,
    check: bool = True,
) -> PreferenceData:
    """The live judgments of a label store (one batch, by name or id, or all)."""
    db = Path(db)
    if not db.is_file():
        raise ArtalignError(f"label store {db} does not exist; pass a .db made by `artalign label`")
    b = _Builder({"kind": "store", "path": str(db), "batch": batch}, both_bad, include_gold)
    with Store(db) as store:
        batch_id = None
        if batch is not None:
            batch_id = store.batch(int(batch) if str(batch).isdigit() else batch).id
        judgments = store.judgments(SYSTEM, batch_id=batch_id, include_gold=include_gold)
        records = store.images([i for j in judgments for i in j.image_ids])
    for j in judgments:
        where = f"{db}: judgment {j.id}"
        gold = j.gold is not None
        ids = [b.image(records[i].path, f"{records[i].path} (image {i})") for i in j.image_ids]
        if j.kind == "pair":
            choice = j.answer.get("choice")
            if b.keep(gold, choice == "both_bad"):
                p_a = {"left": 1.0, "right": 0.0}.get(choice, 0.5)
                b.pair(j.prompt, ids[0], ids[1], p_a, j.rater_name or j.rater_id, where)
        elif b.keep(gold, False):
            b.ranking(j.prompt, ids, j.answer.get("ranks") or [], j.rater_name or j.rater_id, where)
    return b.finish(exclude_raters, rater_weights, flag_kappa, check)


def load_pickapic(
    path: str | Path,
    include_gold: bool = False,
    exclude_raters: str | Sequence[str] | None = None,
    both_bad: str = "drop",
    rater_weights: bool = False,
    flag_kappa: float = 0.2,
    limit: int | None = None,
    check: bool = True,
) -> PreferenceData:
    """A parquet in the Pick-a-Pic layout (caption, jpg_0, jpg_1, label_0, label_1, user_id, ...).

    Image bytes are kept in memory and decoded when used. Rows our exporter wrote from one
    k-way ranking (kind "rank", the same ranking_id) become that ranking again; other rows are
    pairs with p_A = label_0. Rows without a label (has_label false, NaN labels) are skipped.
    """
    labelled, unlabelled = read_pickapic(path, limit)
    b = _Builder({"kind": "pickapic", "path": str(Path(path))}, both_bad, include_gold)
    if unlabelled:
        b.dropped["unlabelled"] += unlabelled
    groups: dict[Any, list[tuple[int, int, float, Any, str]]] = defaultdict(list)
    for row in labelled:
        if not b.keep(row.gold, row.both_bad):
            continue
        ids = [b.image(row.images[s], f"{row.where} jpg_{s}", row.keys[s]) for s in (0, 1)]
        if row.kind == "rank" and row.ranking_id is not None:
            groups[row.ranking_id].append((*ids, row.labels[0], row.rater, row.prompt))
        else:
            b.pair(row.prompt, ids[0], ids[1], row.labels[0], row.rater, row.where)
    for ranking_id, rows in groups.items():
        images = sorted({i for r in rows for i in r[:2]})
        beaten_by = dict.fromkeys(images, 0.0)  # how many images beat each one
        for a, c, label, _, _ in rows:
            beaten_by[c] += label == 1.0
            beaten_by[a] += label == 0.0
        b.ranking(
            rows[0][4],
            images,
            [1 + beaten_by[i] for i in images],
            rows[0][3],
            f"{path}: ranking {ranking_id}",
        )
    return b.finish(exclude_raters, rater_weights, flag_kappa, check)


def load_rankings(
    path: str | Path,
    include_gold: bool = False,
    exclude_raters: str | Sequence[str] | None = None,
    both_bad: str = "drop",
    rater_weights: bool = False,
    flag_kappa: float = 0.2,
    check: bool = True,
) -> PreferenceData:
    """ImageReward-style JSONL (labeling_app/exchange/rankings.py): a line per judgment with
    prompt, generations (paths relative to the file), ranking (1 = best) or choice."""
    b = _Builder({"kind": "rankings", "path": str(Path(path))}, both_bad, include_gold)
    for line in read_rankings(path):
        if not b.keep(line.gold, line.both_bad):
            continue
        ids = [b.image(p.resolve(), str(p)) for p in line.images]
        if line.ranking is None:
            p_a = {"left": 1.0, "right": 0.0}.get(line.choice, 0.5)
            b.pair(line.prompt, ids[0], ids[1], p_a, line.rater, line.where)
        else:
            b.ranking(line.prompt, ids, line.ranking, line.rater, line.where)
    return b.finish(exclude_raters, rater_weights, flag_kappa, check)


def load_preferences(path: str | Path, **kwargs: Any) -> PreferenceData:
    """Load a label store (.db / .sqlite or any SQLite file), a .parquet or a .jsonl file."""
    path = Path(path)
    if not path.exists():
        raise ArtalignError(
            f"preference data {path} does not exist; pass a label store (.db), "
            "a Pick-a-Pic .parquet or a .jsonl rankings file"
        )
    if path.suffix == ".parquet":
        return load_pickapic(path, **{k: v for k, v in kwargs.items() if k != "batch"})
    if path.suffix == ".jsonl":
        return load_rankings(path, **{k: v for k, v in kwargs.items() if k != "batch"})
    with path.open("rb") as f:
        is_sqlite = f.read(16) == b"SQLite format 3\x00"
    if path.suffix in (".db", ".sqlite", ".sqlite3") or is_sqlite:
        return load_from_store(path, **kwargs)
    raise ArtalignError(
        f"cannot tell what {path} is; pass a label store (.db), a .parquet or a .jsonl file"
    )
