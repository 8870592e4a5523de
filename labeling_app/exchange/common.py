"""What the exchange formats share: export and import summaries, the batch builder, helpers.

An import makes one new batch: a task per distinct (prompt, images) with overlap = the number of
its raters, and the judgments; raters are found or made by name. `Importer` collects those and
writes them in one transaction, so a bad file leaves nothing half-imported.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from base_models.errors import ArtalignError
from labeling_app.store import SYSTEM, Store


@dataclass
class ExportSummary:
    """What an export wrote: rows (Pick-a-Pic pairs or JSONL lines), and the "both bad"
    answers it left out (Pick-a-Pic only; 0 when kept)."""

    rows: int
    both_bad_left_out: int = 0


@dataclass
class ImportSummary:
    """What an import added."""

    batch_id: int
    tasks: int
    judgments: int
    raters: int
    skipped: int


def existing_file(path: str | Path, what: str) -> Path:
    """`path` as a Path; ArtalignError naming `what` to pass when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise ArtalignError(f"{path} does not exist; pass {what}")
    return path


def require_prompt(prompt: Any, where: str) -> str:
    """The prompt of a judgment; ArtalignError naming `where` when it is missing or blank."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ArtalignError(f"{where}: the judgment has no prompt; every pair or ranking needs one")
    return prompt


def rater_name(value: Any) -> str | None:
    """A rater's name or id as text; None for a missing one (None or NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def selected_judgments(store: Store, batch: str | None, include_gold: bool) -> list:
    """The judgments an export holds: one batch (by name) or all, gold only on request."""
    batch_id = store.batch(batch).id if batch is not None else None
    return store.judgments(SYSTEM, batch_id=batch_id, include_gold=include_gold)


def png_bytes(data: bytes) -> tuple[bytes, str]:
    """(PNG bytes, source format) of an encoded image; PNG passes through unchanged."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "PNG"
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
    """Collects imported judgments into one batch: images by key, tasks by content, raters."""

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
                            pid,
                            png,
                            seed=meta.get("seed"),
                            model=meta.get("model"),
                            settings=settings,
                        )
                    ids.append(image_ids[(pid, key)])
                # a rater judges a task once: a repeat by the same rater goes to a new task
                rounds: list[list[dict]] = []
                for row in rows:
                    slot = next(
                        (r for r in rounds if all(x["rater"] != row["rater"] for x in r)), None
                    )
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
                            task_id,
                            raters[row["rater"]],
                            row["answer"],
                            client_token=f"import:{batch_id}:{n_judgments}",
                            created_at=row.get("created_at"),
                            seconds=row.get("seconds"),
                        )
                        n_judgments += 1
        return ImportSummary(batch_id, n_tasks, n_judgments, made_raters, self.skipped)
