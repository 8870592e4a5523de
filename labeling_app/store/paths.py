"""Image files of a store: `<db>.images/ab/abcdef….png`, named by the SHA-256 of their bytes.

Every path that comes from the database or from a request goes through `resolve_inside`, so
`..`, absolute paths and symlinks that leave the folder are refused.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath

from labeling_app.store.records import StoreError


def images_dir_for(db_path: str | Path) -> Path:
    """The images folder that belongs to the database file `db_path`."""
    return Path(f"{Path(db_path)}.images")


def relative_path(sha256: str) -> str:
    """Where an image with this hash lives, relative to the images folder."""
    return f"{sha256[:2]}/{sha256}.png"


def resolve_inside(root: Path, relative: str | Path) -> Path:
    """The absolute path of `relative` under `root`; StoreError if it could leave `root`.

    Refused: absolute paths, `..` parts, backslashes, NUL bytes, and anything whose resolved
    location (symlinks followed) is not inside the resolved `root`.
    """
    text = str(relative)
    if not text or "\x00" in text or "\\" in text:
        raise StoreError(f"image path {text!r} is not a plain relative path")
    parts = PurePosixPath(text)
    if parts.is_absolute() or Path(text).is_absolute() or ".." in parts.parts:
        raise StoreError(f"image path {text!r} escapes the images folder")
    base = root.resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise StoreError(f"image path {text!r} escapes the images folder")
    return target


def write_image_file(root: Path, data: bytes) -> tuple[str, str]:
    """Store `data` under its hash (atomically, never overwriting); return (sha256, relpath)."""
    sha = hashlib.sha256(data).hexdigest()
    rel = relative_path(sha)
    target = resolve_inside(root, rel)
    if target.exists():
        return sha, rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".img.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, target)  # fails if another writer got there first: never overwrite
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not target.exists():
                os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha, rel
