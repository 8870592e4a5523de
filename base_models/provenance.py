"""Where a data set came from, and which of its items must never be trained on.

`provenance.json` records the source, the licence and a sha256 per image, so a model can be traced
back to the exact bytes it saw. An opt-out list names images (by hash or by id) that their owners
withdrew; every loader drops them before anything reaches training.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from base_models.io_utils import write_json

PROVENANCE_FILE = "provenance.json"
OPT_OUT_FILE = "opt_out.txt"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks so large images never sit in memory twice."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes held in memory (images stored inside parquet files or tar shards)."""
    return hashlib.sha256(data).hexdigest()


def is_sha256(entry: str) -> bool:
    """True when an opt-out entry looks like a sha256 digest rather than an item id."""
    return bool(_SHA256_RE.match(entry))


def _item_hash(data_dir: Path, item: Any) -> tuple[str, str]:
    """(file_name, sha256) for a Record, a metadata dict with `file_name`, or a relative path."""
    # Records know how to read their own bytes (they may live inside a shard or a parquet file).
    if hasattr(item, "sha256") and hasattr(item, "id"):
        return str(item.id), item.sha256()
    if isinstance(item, Mapping):
        if "file_name" not in item:
            raise ArtalignError(f"provenance item {dict(item)!r} has no `file_name`")
        name = str(item["file_name"])
    else:
        name = str(item)
    path = data_dir / name
    if not path.is_file():
        raise ArtalignError(f"image file {path} does not exist; cannot record its provenance")
    return name, sha256_file(path)


def write_provenance(
    dir: str | Path,
    records: Iterable[Any],
    source: str,
    licence: str,
    extra: dict | None = None,
) -> Path:
    """Write DIR/provenance.json (atomically) with a sha256 for every image; return its path.

    `records` may be loader Records, metadata dicts with a `file_name` relative to DIR, or such
    relative paths. The hashes are the same ones an opt-out list may name.
    """
    data_dir = Path(dir)
    items = [
        {"file_name": name, "sha256": digest}
        for name, digest in (_item_hash(data_dir, r) for r in records)
    ]
    out = data_dir / PROVENANCE_FILE
    write_json(
        out,
        {
            "source": source,
            "licence": licence,
            "created_by": "artalign",
            "extra": dict(extra or {}),
            "items": items,
            "n": len(items),
        },
    )
    return out


def _read_opt_out(path: Path) -> set[str]:
    entries: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        # A trailing " # why" note is allowed after an entry.
        entry = re.split(r"\s+#", entry, maxsplit=1)[0].strip()
        entries.add(entry.lower() if is_sha256(entry.lower()) else entry)
    return entries


def load_opt_out(path: str | Path | None, data_dir: str | Path | None) -> set[str]:
    """Entries of the explicit opt-out list at `path` united with DATA_DIR/opt_out.txt.

    One entry per line: a sha256 of the image file, or an item id (its `file_name` or the stem of
    it). Blank lines and `#` comments are ignored. Both lists count, so a withdrawn image stays
    out even when a command is given another list.
    """
    entries: set[str] = set()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ArtalignError(f"opt-out list {path} does not exist")
        entries |= _read_opt_out(path)
    if data_dir is not None:
        local = Path(data_dir) / OPT_OUT_FILE
        if local.is_file():
            entries |= _read_opt_out(local)
    return entries
