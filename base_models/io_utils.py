"""Small file helpers shared by every stage: atomic writes and JSON files."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file, and a crash leaves the old file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the Hugging Face hub


def looks_like_hub_id(text: str) -> bool:
    """Whether a path that does not exist reads as a hub id (owner/name) or a URL."""
    return text.startswith(("hf://", "http://", "https://")) or bool(_HUB_ID.match(text))


def missing_path_error(value: str | Path, shown: str | None = None) -> ArtalignError:
    """The error for an input path that does not exist (`shown`: how the message names it,
    e.g. "--model X"): a hub id or URL is named as such, since nothing is ever downloaded."""
    text = str(value)
    if looks_like_hub_id(text):
        return ArtalignError(
            f"{text!r} looks like a hub id and nothing is ever downloaded; download the "
            "model yourself and pass its local folder"
        )
    return ArtalignError(f"{shown or text} does not exist; pass an existing path")


def check_new_output(path: str | Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse an output path that already exists unless `overwrite` (never mix two runs)."""
    path = Path(path)
    if path.exists() and not overwrite:
        kind = "folder" if path.is_dir() else "file"
        raise ArtalignError(
            f"{option} {path} is an existing {kind}; pass --overwrite to replace it, "
            f"or pick a new {option}"
        )


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line of a JSONL file.

    A line that is not one JSON object is an error naming the file, the line and the fix.
    """
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ArtalignError(
                f"{where} is not valid JSON ({e.msg}); each line must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise ArtalignError(f"{where} is not a JSON object; each line must be one object")
        rows.append((n, row))
    return rows


def write_text(path: str | Path, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Move the finished folder `tmp` to `final`, replacing any folder already there.

    Each step is a rename, so `final` is at every moment either the old folder or the new one.
    """
    tmp, final = Path(tmp), Path(final)
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old)
