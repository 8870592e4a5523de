"""Export and import preference data: Pick-a-Pic parquet and ImageReward-style JSONL rankings.

pickapic: one row per compared pair, the columns of yuvalkirstain/pickapic_v2 (caption, jpg_0,
  jpg_1, label_0, label_1, user_id, ranking_id, image_0_uid, image_1_uid, model_0, model_1,
  created_at, best_image_uid, has_label, are_different) plus seed_0, seed_1, both_bad,
  rater_name, task_id, kind, batch, seconds, gold and ratings (JSON). The image columns hold
  our PNG bytes (the name is Pick-a-Pic's); `image_X_uid` is the SHA-256 of those bytes. A tie
  is 0.5/0.5. "Both bad" is exported as a tie (0.5/0.5) with `both_bad` True, so readers that
  only know the labels see no preference, and trainers can drop those rows. A k-way ranking
  is exported as its k-choose-2 implied pairs, all with the judgment's id as `ranking_id`.
rankings: one JSON line per judgment (see exchange_rankings.py).

Exports are written atomically and hold live (not undone) judgments, gold tasks only on
request. An import makes one new batch: a task per distinct (prompt, images) with overlap =
the number of its raters, raters named by `rater_name` (or `user_id`), and the judgments.
Pick-a-Pic import always makes pair tasks (a ranking exported as pairs comes back as pairs).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path
from labeling_app.store import SYSTEM, Store, implied_pairs
from labeling_app.store.answers import as_ranks

FORMATS = ("pickapic", "rankings")
REQUIRED_PICKAPIC = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")


@dataclass
class ImportSummary:
    """What an import added."""

    batch_id: int
    tasks: int
    judgments: int
    raters: int
    skipped: int


# --- shared helpers ----------------------------------------------------------------------------
def selected_judgments(store: Store, batch: str | None, include_gold: bool) -> list:
    """The judgments an export holds: one batch (by name) or all, gold only on request."""
    batch_id = store.batch(batch).id if batch is not None else None
    return store.judgments(SYSTEM, batch_id=batch_id, include_gold=include_gold)


def png_bytes(data: bytes) -> tuple[bytes, str]:
    """(PNG bytes, source format) of an encoded image; PNG passes through unchanged."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "PNG"
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "unknown"
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
    except Exception as e:  # PIL raises many types for broken files
        raise ArtalignError(f"an imported image could not be decoded ({e})") from None
    return buf.getvalue(), fmt


def to_timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a float, a datetime or an ISO-8601 string (None stays)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    try:
        return to_timestamp(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        raise ArtalignError(f"created_at {value!r} is not a time (use ISO 8601)") from None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


class Importer:
    """Collects imported judgments into one batch: images by hash, tasks by content, raters."""

    def __init__(self, store: Store, batch_name: str, settings: dict[str, Any]) -> None:
        if any(b.name == batch_name for b in store.batches()):
            raise ArtalignError(f"a batch named {batch_name!r} exists; pass another --batch-name")
        self.store, self.batch_name, self.settings = store, batch_name, settings
        self.groups: dict[tuple, list[dict]] = defaultdict(list)
        self.images: dict[str, tuple[bytes, dict]] = {}
        self.skipped = 0

    def add_image(self, data: bytes, uid: str | None, meta: dict[str, Any]) -> str:
        """Remember an image; return its key (the given uid, else the hash of its bytes)."""
        key = uid or hashlib.sha256(data).hexdigest()
        if key not in self.images:
            self.images[key] = (data, meta)
        return key

    def add(self, prompt: str, kind: str, keys: list[str], row: dict[str, Any]) -> None:
        """One judgment: row holds rater, answer, created_at, seconds."""
        self.groups[(prompt, kind, tuple(keys))].append(row)

    def commit(self) -> ImportSummary:
        """Write batch, prompts, images, tasks, raters and judgments in one transaction."""
        if not self.groups:
            raise ArtalignError("the file holds no judgments to import")
        store = self.store
        raters = {r.name: r.id for r in store.raters()}
        made_raters = n_tasks = n_judgments = 0
        with store.bulk():
            batch_id = store.create_batch(self.batch_name, self.settings)
            image_ids: dict[tuple[int, str], int] = {}
            for (prompt, kind, keys), rows in self.groups.items():
                pid = store.add_prompt(prompt)
                ids = []
                for key in keys:
                    if (pid, key) not in image_ids:
                        data, meta = self.images[key]
                        png, fmt = png_bytes(data)
                        settings = {**meta.get("settings", {}), "source_uid": key}
                        if fmt != "PNG":
                            settings["source_format"] = fmt
                        image_ids[(pid, key)] = store.add_image(
                            pid, png, seed=meta.get("seed"), model=meta.get("model"),
                            settings=settings,
                        )  # fmt: skip
                    ids.append(image_ids[(pid, key)])
                # a rater judges a task once: a repeat by the same rater goes to a new task
                rounds: list[list[dict]] = []
                for row in rows:
                    slot = next((r for r in rounds if all(x["rater"] != row["rater"] for x in r)),
                                None)  # fmt: skip
                    if slot is None:
                        rounds.append(slot := [])
                    slot.append(row)
                for group in rounds:
                    task_id = store.add_task(batch_id, kind, pid, ids, overlap=len(group))
                    n_tasks += 1
                    for row in group:
                        if row["rater"] not in raters:
                            raters[row["rater"]] = store.add_rater(row["rater"])
                            made_raters += 1
                        store.record_judgment(
                            task_id, raters[row["rater"]], row["answer"],
                            client_token=f"import:{batch_id}:{n_judgments}",
                            created_at=row.get("created_at"), seconds=row.get("seconds"),
                        )  # fmt: skip
                        n_judgments += 1
        return ImportSummary(batch_id, n_tasks, n_judgments, made_raters, self.skipped)


# --- Pick-a-Pic parquet --------------------------------------------------------------------
def _pickapic_schema():
    import pyarrow as pa

    return pa.schema([
        ("caption", pa.string()), ("jpg_0", pa.binary()), ("jpg_1", pa.binary()),
        ("label_0", pa.float64()), ("label_1", pa.float64()), ("both_bad", pa.bool_()),
        ("has_label", pa.bool_()), ("are_different", pa.bool_()),
        ("best_image_uid", pa.string()), ("user_id", pa.int64()), ("rater_name", pa.string()),
        ("ranking_id", pa.int64()), ("task_id", pa.int64()), ("kind", pa.string()),
        ("batch", pa.string()), ("image_0_uid", pa.string()), ("image_1_uid", pa.string()),
        ("model_0", pa.string()), ("model_1", pa.string()), ("seed_0", pa.int64()),
        ("seed_1", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
        ("seconds", pa.float64()), ("gold", pa.bool_()), ("ratings", pa.string()),
    ])  # fmt: skip


def export_pickapic(
    store: Store, out: str | Path, batch: str | None = None, include_gold: bool = False
) -> int:
    """Write the Pick-a-Pic parquet; return the number of rows (compared pairs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    judgments = selected_judgments(store, batch, include_gold)
    images = store.images([i for j in judgments for i in j.image_ids])
    names = {b.id: b.name for b in store.batches()}
    cache: dict[int, bytes] = {}

    def data(image_id: int) -> bytes:
        if image_id not in cache:
            cache[image_id] = store.image_path(image_id).read_bytes()
        return cache[image_id]

    rows = []
    for j in judgments:
        ranks = as_ranks(j.kind, j.answer) or [1, 1]  # both_bad: no preference, a tie
        for a, b, label in implied_pairs(ranks):
            ia, ib = images[j.image_ids[a]], images[j.image_ids[b]]
            best = ia.sha256 if label == 1 else ib.sha256 if label == 0 else ""
            rows.append({
                "caption": j.prompt, "jpg_0": data(ia.id), "jpg_1": data(ib.id),
                "label_0": label, "label_1": 1.0 - label,
                "both_bad": j.answer.get("choice") == "both_bad", "has_label": True,
                "are_different": ia.sha256 != ib.sha256, "best_image_uid": best,
                "user_id": j.rater_id, "rater_name": j.rater_name, "ranking_id": j.id,
                "task_id": j.task_id, "kind": j.kind, "batch": names[j.batch_id],
                "image_0_uid": ia.sha256, "image_1_uid": ib.sha256,
                "model_0": ia.model, "model_1": ib.model, "seed_0": ia.seed, "seed_1": ib.seed,
                "created_at": datetime.fromtimestamp(j.created_at, tz=timezone.utc),
                "seconds": j.seconds, "gold": j.gold is not None,
                "ratings": json.dumps(j.answer["ratings"]) if "ratings" in j.answer else None,
            })  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=_pickapic_schema())
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return len(rows)


def _choice(row: dict[str, Any]) -> str | None:
    l0, l1 = row.get("label_0"), row.get("label_1")
    if l0 is None or l1 is None or any(isinstance(x, float) and math.isnan(x) for x in (l0, l1)):
        return None
    if l0 == l1:
        return "both_bad" if row.get("both_bad") else "tie"
    return "left" if l0 > l1 else "right"


def import_pickapic(store: Store, path: str | Path, batch_name: str | None = None) -> ImportSummary:
    """Read a Pick-a-Pic-layout parquet into a new batch of pair tasks."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ArtalignError(f"{path} does not exist; pass a parquet file")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and OSError for non-parquet files
        raise ArtalignError(f"{path} is not a parquet file ({e})") from None
    missing = [c for c in REQUIRED_PICKAPIC if c not in pf.schema_arrow.names]
    if missing:
        raise ArtalignError(f"{path} lacks the Pick-a-Pic columns {', '.join(missing)}")
    imp = Importer(store, batch_name or f"import-{path.stem}",
                   {"source": str(path), "format": "pickapic"})  # fmt: skip
    for part in pf.iter_batches(batch_size=512):
        for row in part.to_pylist():
            choice = _choice(row)
            if choice is None or not row.get("caption") or not row["jpg_0"] or not row["jpg_1"]:
                imp.skipped += 1
                continue
            keys = [
                imp.add_image(row[f"jpg_{s}"], row.get(f"image_{s}_uid"),
                              {"seed": row.get(f"seed_{s}"), "model": row.get(f"model_{s}")})
                for s in (0, 1)
            ]  # fmt: skip
            user = row.get("rater_name") or row.get("user_id")
            answer: dict[str, Any] = {"choice": choice}
            if row.get("ratings") and row.get("kind", "pair") == "pair":
                answer["ratings"] = json.loads(row["ratings"])
            imp.add(row["caption"], "pair", keys, {
                "rater": str(user) if user is not None else "imported", "answer": answer,
                "created_at": to_timestamp(row.get("created_at")), "seconds": row.get("seconds"),
            })  # fmt: skip
    return imp.commit()


def export_labels(store: Store, out: str | Path, fmt: str = "pickapic", **kwargs: Any) -> int:
    """Export in `fmt` (pickapic | rankings); return the number of rows or lines written."""
    # cycle: exchange_rankings imports this module (issue 20 step 2 makes labeling_app/exchange/)
    from labeling_app.exchange_rankings import export_rankings

    if fmt not in FORMATS:
        raise ArtalignError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    return (export_pickapic if fmt == "pickapic" else export_rankings)(store, out, **kwargs)


def import_labels(
    store: Store, path: str | Path, fmt: str = "pickapic", batch_name: str | None = None
) -> ImportSummary:
    """Import a file in `fmt` (pickapic | rankings) into a new batch."""
    # cycle: exchange_rankings imports this module (issue 20 step 2 makes labeling_app/exchange/)
    from labeling_app.exchange_rankings import import_rankings

    if fmt not in FORMATS:
        raise ArtalignError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    return (import_pickapic if fmt == "pickapic" else import_rankings)(store, path, batch_name)
