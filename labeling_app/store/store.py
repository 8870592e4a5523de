"""`Store`: the one gateway to the preference database (docs/labeling_store.md is the contract).

One `Store` per thread or process is the intended use (`Store(db)` is cheap); a `Store` shared
between threads is still safe because every call holds its lock. Every write is one
`BEGIN IMMEDIATE` transaction that has committed (synchronous=FULL) before the method returns.
Calls inside `with store.bulk():` join one transaction instead (imports, benchmark fills).
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labeling_app.store.answers import validate_answer
from labeling_app.store.auth import RaterMixin
from labeling_app.store.paths import images_dir_for, resolve_inside, write_image_file
from labeling_app.store.reading import ReadingMixin
from labeling_app.store.records import (
    INSTRUCTIONS_KEY,
    KINDS,
    MAX_INSTRUCTIONS,
    Batch,
    ImageRecord,
    Rater,
    StoreError,
)
from labeling_app.store.schema import connect
from labeling_app.store.serving import ServingMixin


def _json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what} must be JSON-serialisable: {e}") from None


def _png_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image, or `image` itself if it is already PNG bytes."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise StoreError("image bytes are not a PNG; pass PNG bytes or a PIL image")
        return data
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        raise StoreError("pass PNG bytes (pillow is not installed)") from None
    if not isinstance(image, Image.Image):
        raise StoreError(f"an image must be PNG bytes or a PIL image, got {type(image).__name__}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
            return im.size
    except Exception as e:  # PIL raises many types for broken files
        raise StoreError(f"image bytes are not a readable PNG ({e})") from None


class Store(RaterMixin, ServingMixin, ReadingMixin):
    """The preference store at `db_path` (its images live in `db_path` + `.images/`)."""

    def __init__(
        self,
        db_path: str | Path,
        create: bool = False,
        *,
        clock: Callable[[], float] | None = None,
        max_failures: int = 5,
        lockout_seconds: float = 900.0,
    ) -> None:
        """Open the store; `create=True` makes it if missing. `clock` (seconds) is for tests."""
        self.db_path = Path(db_path)
        self.images_dir = images_dir_for(self.db_path)
        self._now = clock or time.time
        self.max_failures, self.lockout_seconds = max_failures, lockout_seconds
        self.default_lock_seconds = 300.0
        self._lock = threading.RLock()
        self._depth = 0
        self._rng = random.Random()
        self._rng_seed: int | None = None
        self._conn: sqlite3.Connection | None = connect(self.db_path, create)
        if create:
            self.images_dir.mkdir(parents=True, exist_ok=True)

    # --- connection and transactions ----------------------------------------------------
    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction (or the enclosing one): commit or roll back."""
        with self._lock:
            if self._conn is None:
                raise StoreError("this Store is closed; open a new one")
            conn = self._conn
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as e:
                conn.execute("ROLLBACK")
                raise StoreError(f"the store refused the write ({e}); check the ids") from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    @contextmanager
    def bulk(self) -> Iterator[Store]:
        """Run many writes as one transaction (all or nothing); used by imports and fills."""
        with self._write():
            yield self

    # --- content --------------------------------------------------------------------------
    def add_prompt(self, text: str) -> int:
        """The id of prompt `text` (added if new; the same text always maps to one id)."""
        if not isinstance(text, str) or not text.strip():
            raise StoreError("a prompt must be non-empty text")
        with self._write() as c:
            row = c.execute("SELECT id FROM prompt WHERE text = ?", (text,)).fetchone()
            if row:
                return row[0]
            return c.execute("INSERT INTO prompt (text) VALUES (?)", (text,)).lastrowid

    def add_image(
        self,
        prompt_id: int | None,
        image: Any,
        *,
        seed: int | None,
        model: str | None,
        settings: dict[str, Any] | None = None,
    ) -> int:
        """Store PNG bytes (or a PIL image, saved as PNG) under their hash; return the row id."""
        data = _png_bytes(image)
        width, height = _png_size(data)
        settings_json = _json(settings or {}, "image settings")
        if seed is not None and not isinstance(seed, int):
            raise StoreError(f"seed must be an integer or None, got {seed!r}")
        with self._write() as c:
            if (
                prompt_id is not None
                and not c.execute("SELECT 1 FROM prompt WHERE id = ?", (prompt_id,)).fetchone()
            ):
                raise StoreError(f"no prompt with id {prompt_id}")
            sha, rel = write_image_file(self.images_dir, data)
            return c.execute(
                "INSERT INTO image (sha256, path, prompt_id, seed, model, settings, width, "
                "height, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sha, rel, prompt_id, seed, model, settings_json, width, height, self._now()),
            ).lastrowid

    def resolve_image_path(self, relative: str | Path) -> Path:
        """Absolute path of `relative` inside the images folder; StoreError if it escapes."""
        return resolve_inside(self.images_dir, relative)

    def image_path(self, image_id: int) -> Path:
        """The file of image `image_id`, checked to lie inside the images folder."""
        row = self._row("SELECT path FROM image WHERE id = ?", (image_id,))
        if row is None:
            raise StoreError(f"no image with id {image_id}")
        path = self.resolve_image_path(row[0])
        if not path.is_file():
            raise StoreError(f"image {image_id} is missing from {self.images_dir}")
        return path

    def images(self, image_ids: list[int]) -> dict[int, ImageRecord]:
        """Image rows by id (unknown ids are left out)."""
        out: dict[int, ImageRecord] = {}
        ids = list(dict.fromkeys(int(i) for i in image_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._rows(
                "SELECT id, sha256, path, prompt_id, seed, model, settings, width, height, "
                f"created_at FROM image WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for r in rows:
                out[r[0]] = ImageRecord(
                    id=r[0],
                    sha256=r[1],
                    path=self.resolve_image_path(r[2]),
                    prompt_id=r[3],
                    seed=r[4],
                    model=r[5],
                    settings=json.loads(r[6]),
                    width=r[7],
                    height=r[8],
                    created_at=r[9],
                )
        return out

    def create_batch(self, name: str, settings: dict[str, Any] | None = None) -> int:
        """A new batch; StoreError if the name is taken."""
        if not isinstance(name, str) or not name.strip():
            raise StoreError("a batch needs a non-empty name")
        settings_json = _json(settings or {}, "batch settings")
        with self._write() as c:
            if c.execute("SELECT 1 FROM batch WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a batch named {name!r} exists; pass another --batch-name")
            return c.execute(
                "INSERT INTO batch (name, settings, created_at) VALUES (?, ?, ?)",
                (name, settings_json, self._now()),
            ).lastrowid

    def batches(self) -> list[Batch]:
        """Every batch, in id order."""
        rows = self._rows("SELECT id, name, settings, created_at, done FROM batch ORDER BY id")
        return [Batch(r[0], r[1], json.loads(r[2]), r[3], bool(r[4])) for r in rows]

    def batch(self, name_or_id: str | int) -> Batch:
        """One batch by name or id; StoreError if unknown."""
        for b in self.batches():
            if name_or_id in (b.id, b.name):
                return b
        raise StoreError(f"no batch {name_or_id!r}; `artalign label status` lists them")

    def mark_batch_done(
        self, batch_id: int, done: bool = True, *, actor: Rater | None = None
    ) -> None:
        """Close a batch (its tasks are no longer served) or reopen it.

        `actor`: the admin doing it (checked in the database), None for the local operator.
        """
        with self._write() as c:
            self._require_admin(c, actor, "close or reopen batches")
            cur = c.execute("UPDATE batch SET done = ? WHERE id = ?", (int(done), batch_id))
            if cur.rowcount == 0:
                raise StoreError(f"no batch with id {batch_id}")

    def set_batch_instructions(
        self, batch_id: int, text: str, *, actor: Rater | None = None
    ) -> None:
        """Set the instructions raters see above this batch's tasks ("" clears them).

        Kept in the batch's settings (`Batch.instructions`), at most MAX_INSTRUCTIONS
        characters. `actor`: the admin doing it (checked in the database), None for the
        local operator.
        """
        if not isinstance(text, str):
            raise StoreError(f"instructions must be text, got {type(text).__name__}")
        text = text.strip()
        if len(text) > MAX_INSTRUCTIONS:
            raise StoreError(
                f"instructions are {len(text):,} characters; shorten them to "
                f"{MAX_INSTRUCTIONS:,} or fewer"
            )
        with self._write() as c:
            self._require_admin(c, actor, "set batch instructions")
            row = c.execute("SELECT settings FROM batch WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise StoreError(f"no batch with id {batch_id}")
            settings = json.loads(row[0])
            if text:
                settings[INSTRUCTIONS_KEY] = text
            else:
                settings.pop(INSTRUCTIONS_KEY, None)
            c.execute(
                "UPDATE batch SET settings = ? WHERE id = ?",
                (_json(settings, "batch settings"), batch_id),
            )

    def add_task(
        self,
        batch_id: int,
        kind: str,
        prompt_id: int,
        image_ids: list[int],
        *,
        overlap: int = 1,
        gold: dict[str, Any] | None = None,
        priority: float = 0.0,
    ) -> int:
        """A task over `image_ids` (display order): 2 for a pair, k >= 2 for a ranking.

        `overlap` is how many raters judge it; a gold task (with its answer in `gold`) is
        served to every rater once, at the `gold_rate` of `next_task`, whatever its overlap.
        """
        if kind not in KINDS:
            raise StoreError(f"unknown task kind {kind!r}; use 'pair' or 'rank'")
        ids = [int(i) for i in image_ids]
        if kind == "pair" and len(ids) != 2:
            raise StoreError(f"a pair task needs 2 images, got {len(ids)}")
        if kind == "rank" and len(ids) < 2:
            raise StoreError(f"a rank task needs at least 2 images, got {len(ids)}")
        if len(set(ids)) != len(ids):
            raise StoreError(f"a task shows each image once, got {ids}")
        if not isinstance(overlap, int) or overlap < 1:
            raise StoreError(f"overlap must be an integer >= 1, got {overlap!r}")
        gold_json = None if gold is None else _json(validate_answer(kind, len(ids), gold), "gold")
        with self._write() as c:
            if not c.execute("SELECT 1 FROM batch WHERE id = ?", (batch_id,)).fetchone():
                raise StoreError(f"no batch with id {batch_id}")
            if not c.execute("SELECT 1 FROM prompt WHERE id = ?", (prompt_id,)).fetchone():
                raise StoreError(f"no prompt with id {prompt_id}")
            marks = ",".join("?" * len(ids))
            found = c.execute(f"SELECT count(*) FROM image WHERE id IN ({marks})", ids).fetchone()
            if found[0] != len(ids):
                raise StoreError(f"unknown image id among {ids}")
            return c.execute(
                "INSERT INTO task (batch_id, kind, prompt_id, image_ids, overlap, gold, "
                "is_gold, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch_id,
                    kind,
                    prompt_id,
                    json.dumps(ids),
                    overlap,
                    gold_json,
                    int(gold is not None),
                    float(priority),
                ),
            ).lastrowid

    def set_priorities(self, priorities: dict[int, float]) -> None:
        """Set `task.priority` (reward-model uncertainty): order="uncertain" serves high first."""
        with self._write() as c:
            c.executemany(
                "UPDATE task SET priority = ? WHERE id = ?",
                [(float(p), int(t)) for t, p in priorities.items()],
            )
