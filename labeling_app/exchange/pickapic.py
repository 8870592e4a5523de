"""Pick-a-Pic parquet: export, and the one reader of the layout (the store import and the reward
loader `rlhf.reward.loaders.load_pickapic` both read through `read_pickapic`).

One row per compared pair, the columns of yuvalkirstain/pickapic_v2 (caption, jpg_0, jpg_1,
label_0, label_1, user_id, ranking_id, image_0_uid, image_1_uid, model_0, model_1, created_at,
best_image_uid, has_label, are_different) plus seed_0, seed_1, both_bad, rater_name, task_id,
kind, batch, seconds, gold and ratings (JSON). `jpg_0` / `jpg_1` hold PNG bytes, not JPEG: the
column names are Pick-a-Pic's, and its loaders decode the bytes with PIL, which reads PNG as
well; `image_X_uid` is the SHA-256 of those bytes. A tie is 0.5/0.5.

"Both bad" states no preference, but a standard Pick-a-Pic loader knows only the labels and
would read it as a tie, so the export leaves both-bad answers out unless asked to keep them
(`keep_both_bad`); kept, each is a 0.5/0.5 row with `both_bad` True, and `read_pickapic`
brings it back as "both bad". A k-way ranking is exported as its k-choose-2 implied pairs (kind
"rank"), all with the judgment's id as `ranking_id`. Import always makes pair tasks (a ranking
exported as pairs comes back as pairs).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path
from labeling_app.exchange.common import (
    ExportSummary,
    Importer,
    ImportSummary,
    existing_file,
    rater_name,
    require_prompt,
    selected_judgments,
    to_timestamp,
)
from labeling_app.store import Store, implied_pairs
from labeling_app.store.answers import as_ranks

REQUIRED = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")


def _pickapic_schema():
    import pyarrow as pa  # lazy: pyarrow

    return pa.schema(
        [
            ("caption", pa.string()),
            ("jpg_0", pa.binary()),
            ("jpg_1", pa.binary()),
            ("label_0", pa.float64()),
            ("label_1", pa.float64()),
            ("both_bad", pa.bool_()),
            ("has_label", pa.bool_()),
            ("are_different", pa.bool_()),
            ("best_image_uid", pa.string()),
            ("user_id", pa.int64()),
            ("rater_name", pa.string()),
            ("ranking_id", pa.int64()),
            ("task_id", pa.int64()),
            ("kind", pa.string()),
            ("batch", pa.string()),
            ("image_0_uid", pa.string()),
            ("image_1_uid", pa.string()),
            ("model_0", pa.string()),
            ("model_1", pa.string()),
            ("seed_0", pa.int64()),
            ("seed_1", pa.int64()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("seconds", pa.float64()),
            ("gold", pa.bool_()),
            ("ratings", pa.string()),
        ]
    )


def export_pickapic(
    store: Store,
    out: str | Path,
    batch: str | None = None,
    include_gold: bool = False,
    keep_both_bad: bool = False,
) -> ExportSummary:
    """Write the Pick-a-Pic parquet; return the rows written and the both-bad answers left out.

    One row per compared pair; `jpg_0` / `jpg_1` hold the images' PNG bytes (Pick-a-Pic's
    column names; its loaders open them with PIL, which reads PNG). "Both bad" answers are left
    out, because label-only loaders would take their 0.5/0.5 for a tie; `keep_both_bad` keeps
    them as 0.5/0.5 rows flagged `both_bad`.
    """
    import pyarrow as pa  # lazy: pyarrow
    import pyarrow.parquet as pq  # lazy: pyarrow

    judgments = selected_judgments(store, batch, include_gold)
    images = store.images([i for j in judgments for i in j.image_ids])
    names = {b.id: b.name for b in store.batches()}
    cache: dict[int, bytes] = {}

    def data(image_id: int) -> bytes:
        if image_id not in cache:
            cache[image_id] = store.image_path(image_id).read_bytes()
        return cache[image_id]

    rows = []
    left_out = 0
    for j in judgments:
        both_bad = j.answer.get("choice") == "both_bad"
        if both_bad and not keep_both_bad:
            left_out += 1
            continue
        ranks = as_ranks(j.kind, j.answer) or [1, 1]  # both_bad: no preference, labelled a tie
        for a, b, label in implied_pairs(ranks):
            ia, ib = images[j.image_ids[a]], images[j.image_ids[b]]
            best = ia.sha256 if label == 1 else ib.sha256 if label == 0 else ""
            rows.append(
                {
                    "caption": j.prompt,
                    "jpg_0": data(ia.id),
                    "jpg_1": data(ib.id),
                    "label_0": label,
                    "label_1": 1.0 - label,
                    "both_bad": both_bad,
                    "has_label": True,
                    "are_different": ia.sha256 != ib.sha256,
                    "best_image_uid": best,
                    "user_id": j.rater_id,
                    "rater_name": j.rater_name,
                    "ranking_id": j.id,
                    "task_id": j.task_id,
                    "kind": j.kind,
                    "batch": names[j.batch_id],
                    "image_0_uid": ia.sha256,
                    "image_1_uid": ib.sha256,
                    "model_0": ia.model,
                    "model_1": ib.model,
                    "seed_0": ia.seed,
                    "seed_1": ib.seed,
                    "created_at": datetime.fromtimestamp(j.created_at, tz=timezone.utc),
                    "seconds": j.seconds,
                    "gold": j.gold is not None,
                    "ratings": json.dumps(j.answer["ratings"]) if "ratings" in j.answer else None,
                }
            )
    table = pa.Table.from_pylist(rows, schema=_pickapic_schema())
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return ExportSummary(rows=len(rows), both_bad_left_out=left_out)


@dataclass(frozen=True)
class PickapicRow:
    """One labelled row: two images of a prompt and who preferred which."""

    where: str  # "FILE: row N" (N from 0), for error messages
    prompt: str
    images: tuple[bytes, bytes]  # encoded, as stored in jpg_0 / jpg_1
    keys: tuple[str, str]  # image_X_uid, else the SHA-256 of the bytes
    labels: tuple[float, float]  # label_0, label_1: the share preferring each image
    both_bad: bool
    rater: str | None  # rater_name, else user_id
    kind: str  # "pair", or "rank" for an implied pair of a k-way ranking
    ranking_id: Any
    gold: bool
    ratings: dict[str, Any] | None
    created_at: float | None
    seconds: float | None
    models: tuple[str | None, str | None]
    seeds: tuple[int | None, int | None]

    @property
    def choice(self) -> str:
        """The pair answer: left | right | tie | both_bad."""
        l0, l1 = self.labels
        if l0 == l1:
            return "both_bad" if self.both_bad else "tie"
        return "left" if l0 > l1 else "right"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _row(row: dict[str, Any], where: str) -> PickapicRow | None:
    """The checked record of a parquet row; None for a row without a label."""
    labels = (row.get("label_0"), row.get("label_1"))
    if row.get("has_label") is False or any(_missing(x) for x in labels):
        return None
    prompt = require_prompt(row.get("caption"), where)
    for s in (0, 1):
        if not row.get(f"jpg_{s}"):
            raise ArtalignError(f"{where}: jpg_{s} holds no image bytes")
    images = (row["jpg_0"], row["jpg_1"])
    ratings = row.get("ratings")
    if isinstance(ratings, str) and ratings:
        try:
            ratings = json.loads(ratings)
        except json.JSONDecodeError as e:
            raise ArtalignError(f"{where}: ratings is not JSON ({e})") from None
    return PickapicRow(
        where=where,
        prompt=prompt,
        images=images,
        keys=tuple(
            row.get(f"image_{s}_uid") or hashlib.sha256(images[s]).hexdigest() for s in (0, 1)
        ),
        labels=(float(labels[0]), float(labels[1])),
        both_bad=bool(row.get("both_bad")),
        rater=rater_name(row.get("rater_name") or row.get("user_id")),
        kind=row.get("kind") or "pair",
        ranking_id=row.get("ranking_id"),
        gold=bool(row.get("gold")),
        ratings=ratings or None,
        created_at=to_timestamp(row.get("created_at")),
        seconds=row.get("seconds"),
        models=(row.get("model_0"), row.get("model_1")),
        seeds=(row.get("seed_0"), row.get("seed_1")),
    )


def read_pickapic(path: str | Path, limit: int | None = None) -> tuple[list[PickapicRow], int]:
    """(the labelled rows, how many rows had no label) of the first `limit` rows (all: None).

    A row without a label (has_label false, a missing or NaN label) is left out; a labelled row
    without a caption or image bytes is an ArtalignError naming the row.
    """
    import pyarrow.parquet as pq  # lazy: pyarrow

    path = existing_file(path, "a Pick-a-Pic parquet file")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and OSError for non-parquet files
        raise ArtalignError(f"{path} is not a parquet file ({e})") from None
    with pf:
        missing = [c for c in REQUIRED if c not in pf.schema_arrow.names]
        if missing:
            raise ArtalignError(f"{path} lacks the Pick-a-Pic columns {', '.join(missing)}")
        rows: list[PickapicRow] = []
        n = 0
        for part in pf.iter_batches(batch_size=512):
            for raw in part.to_pylist():
                if limit is not None and n >= limit:
                    return rows, n - len(rows)
                if (row := _row(raw, f"{path}: row {n}")) is not None:
                    rows.append(row)
                n += 1
    return rows, n - len(rows)


def import_pickapic(store: Store, path: str | Path, batch_name: str | None = None) -> ImportSummary:
    """Read a Pick-a-Pic-layout parquet into a new batch of pair tasks."""
    rows, unlabelled = read_pickapic(path)
    path = Path(path)
    imp = Importer(
        store, batch_name or f"import-{path.stem}", {"source": str(path), "format": "pickapic"}
    )
    imp.skipped = unlabelled
    for row in rows:
        meta = [{"seed": row.seeds[s], "model": row.models[s]} for s in (0, 1)]
        keys = [imp.add_image(row.images[s], row.keys[s], meta[s]) for s in (0, 1)]
        answer: dict[str, Any] = {"choice": row.choice}
        if row.ratings and row.kind == "pair":
            answer["ratings"] = row.ratings
        imp.add(
            row.prompt,
            "pair",
            keys,
            {
                "rater": row.rater if row.rater is not None else "imported",
                "answer": answer,
                "created_at": row.created_at,
                "seconds": row.seconds,
            },
        )
    return imp.commit()
