"""Read captioned image data sets into Records, whatever their on-disk format.

Formats (README, "The procedural world"):
- HF `imagefolder`: DIR/metadata.jsonl (or metadata.csv / metadata.parquet) with `file_name`,
  `text` and any attributes;
- a `.csv` or `.parquet` file whose `file_name` / `image` column is a path relative to the file;
  parquet may instead hold the image bytes (raw, or HF's {"bytes", "path"} struct);
- webdataset `.tar` shards: a folder of them, one shard, or a glob / brace pattern
  (`shards/train-{000..009}.tar`).

Every bad input ends in one ArtalignError that names the file, the line and the fix. Opted-out
items (provenance.load_opt_out) are dropped here, so they never reach training.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from braceexpand import braceexpand
from PIL import Image

from base_models.data.transforms import ImageTextTransform
from base_models.errors import ArtalignError
from base_models.io_utils import read_jsonl
from base_models.provenance import (
    OPT_OUT_FILE,
    is_sha256,
    load_opt_out,
    sha256_bytes,
    sha256_file,
)

METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
IMAGE_EXTS = ("png", "jpg", "jpeg")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass
class Record:
    """One captioned image: its id, caption, attributes, and where its bytes live.

    Exactly one of `data` (bytes held in memory) or `path` is the image source; with `span` the
    image is the byte range (offset, size) inside `path` (a member of an uncompressed tar shard),
    so shards are read lazily rather than held in memory.
    """

    id: str
    text: str
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    span: tuple[int, int] | None = None
    origin: str = ""  # where the record came from, for error messages

    def read_bytes(self) -> bytes:
        """The image file's bytes, exactly as stored (what sha256 and opt-out lists refer to)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ArtalignError(f"item `{self.id}` ({self.origin}) has no image")
        try:
            if self.span is None:
                return self.path.read_bytes()
            offset, size = self.span
            with open(self.path, "rb") as f:
                f.seek(offset)
                return f.read(size)
        except OSError as e:
            raise ArtalignError(
                f"cannot read image of `{self.id}` ({self.origin}): {_one_line(e)}"
            ) from e

    def sha256(self) -> str:
        """Hex sha256 of the image bytes; matches provenance.json and opt-out entries."""
        if self.data is None and self.span is None and self.path is not None:
            return sha256_file(self.path)
        return sha256_bytes(self.read_bytes())

    def names(self) -> set[str]:
        """Every id an opt-out list may use for this item: file_name, base name, stems."""
        p = Path(self.id)
        return {self.id, p.name, p.stem, str(p.with_suffix("")) if p.suffix else self.id}

    def load_image(self) -> Image.Image:
        """Decode the image as RGB; a corrupt file raises an ArtalignError naming it."""
        try:
            with Image.open(io.BytesIO(self.read_bytes())) as im:
                im.load()
                return _to_rgb(im)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ArtalignError(
                f"image {self.origin} is corrupt or not an image ({_one_line(e)}); remove it, "
                f"or add `{self.id}` to {OPT_OUT_FILE} in the data folder"
            ) from e


def _to_rgb(im: Image.Image) -> Image.Image:
    # Transparent pixels become white, not the arbitrary colour hidden under alpha = 0.
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")


# ----------------------------------------------------------------------------- shared helpers


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (the CLI prints errors as one line)."""
    return " ".join(str(err).split())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _caption(value: Any, where: str, require_text: bool) -> str:
    if _missing(value):
        if require_text:
            raise ArtalignError(
                f"{where} has no `text`; add a `text` caption for every image "
                "(a `text` key in metadata.jsonl, or a `text` column)"
            )
        return ""
    return str(value)


def _native(value: Any) -> Any:
    """Plain Python values for attributes (numpy scalars from pandas, JSON kept in CSV cells)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        value = value.item()
    if isinstance(value, str) and value.startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _image_path(base: Path, rel: Any, where: str) -> Path:
    if _missing(rel) or not str(rel):
        raise ArtalignError(f"{where} has no image path; fill in its `file_name` or `image`")
    path = base / str(rel)
    if not path.is_file():
        raise ArtalignError(
            f"image file {path} (listed in {where}) does not exist; add it or remove that entry"
        )
    return path


# ----------------------------------------------------------------------------- imagefolder


def _read_jsonl(meta: Path, require_text: bool) -> list[Record]:
    base = meta.parent
    records = []
    for lineno, row in read_jsonl(meta):
        where = f"{meta} line {lineno}"
        if "file_name" not in row:
            raise ArtalignError(f"{where} has no `file_name`; name the image file it captions")
        name = str(row.pop("file_name"))
        text = _caption(row.pop("text", None), where, require_text)
        path = _image_path(base, name, where)
        records.append(Record(name, text, row, path=path, origin=str(path)))
    return records


# ----------------------------------------------------------------------------- csv / parquet


def _path_column(columns: Iterable[str], source: Path) -> str:
    for name in ("file_name", "image"):
        if name in columns:
            return name
    raise ArtalignError(
        f"{source} has no `file_name` or `image` column; add one with each image's path "
        "relative to the file"
    )


def _check_text_column(columns: Iterable[str], source: Path, require_text: bool) -> None:
    if require_text and "text" not in columns:
        raise ArtalignError(f"{source} has no `text` column; add a `text` column with one caption")


def _read_csv(path: Path, require_text: bool) -> list[Record]:
    import pandas as pd

    try:
        # Only empty cells are missing: a caption such as "None" or "NA" stays text.
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ArtalignError(f"cannot read CSV {path}: {_one_line(e)}") from e
    col = _path_column(frame.columns, path)
    _check_text_column(frame.columns, path, require_text)
    records = []
    for i, row in enumerate(frame.to_dict(orient="records")):
        where = f"{path} row {i + 2}"  # row 1 is the header, as a spreadsheet numbers it
        rel = row.pop(col)
        row.pop("file_name", None)
        text = _caption(row.pop("text", None), where, require_text)
        attrs = {k: _native(v) for k, v in row.items() if not _missing(v)}
        img = _image_path(path.parent, rel, where)
        records.append(Record(str(rel), text, attrs, path=img, origin=str(img)))
    return records


def _read_parquet(path: Path, require_text: bool) -> list[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise ArtalignError(f"cannot read parquet file {path}: {_one_line(e)}") from e
    columns = table.column_names
    col = _path_column(columns, path)
    _check_text_column(columns, path, require_text)
    records = []
    for i, row in enumerate(table.to_pylist()):
        where = f"{path} row {i}"
        image = row.pop("image", None)
        file_name = row.pop("file_name", None)
        text = _caption(row.pop("text", None), where, require_text)
        attrs = {k: _native(v) for k, v in row.items() if not _missing(v)}
        data, struct_path = None, None
        if isinstance(image, dict):  # HF datasets' Image feature: {"bytes": ..., "path": ...}
            data, struct_path = image.get("bytes"), image.get("path")
        elif isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        if data is not None:
            rid = str(file_name or struct_path or f"{i:06d}")
            records.append(Record(rid, text, attrs, data=data, origin=f"{where} (`{rid}`)"))
            continue
        rel = file_name if col == "file_name" else (struct_path or image)
        img = _image_path(path.parent, rel, where)
        records.append(Record(str(rel), text, attrs, path=img, origin=str(img)))
    return records


# ----------------------------------------------------------------------------- webdataset
#
# Shards are read with `tarfile`, following webdataset's naming convention (a sample's key is the
# member path up to the first dot of its base name; the rest is the field). webdataset's own
# WebDataset is a streaming IterableDataset: it cannot give a finite, indexed list to filter by
# opt-out and hash for provenance, and its errors surface mid-training through generic handlers.
# tarfile also gives each member's byte offset, so uncompressed shards are read lazily by seek.

_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def _split_key(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _read_shard(shard: Path, require_text: bool) -> list[Record]:
    with open(shard, "rb") as f:
        compressed = f.read(6).startswith(_COMPRESSED_MAGIC)
    try:
        with tarfile.open(shard, "r:*") as tar:
            return _read_samples(tar, shard, compressed, require_text)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArtalignError(
            f"shard {shard} is not a readable tar file or is truncated ({_one_line(e)})"
        ) from e


def _read_samples(
    tar: tarfile.TarFile, shard: Path, compressed: bool, require_text: bool
) -> list[Record]:
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    for m in tar.getmembers():
        key, ext = _split_key(m.name)
        if m.isfile() and ext and not Path(key).name.startswith("."):
            samples.setdefault(key, {})[ext] = m

    def read_text(m: tarfile.TarInfo, where: str) -> str:
        f = tar.extractfile(m)
        assert f is not None  # regular files always have a file object
        try:
            return f.read().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ArtalignError(f"{where}: {m.name} is not UTF-8 text ({_one_line(e)})") from e

    records = []
    for key, fields in samples.items():
        where = f"sample `{key}` in shard {shard}"
        img = next((fields[e] for e in IMAGE_EXTS if e in fields), None)
        if img is None:
            raise ArtalignError(f"{where} has no .png/.jpg/.jpeg image; add one or drop it")
        attrs: dict[str, Any] = {}
        if "json" in fields:
            try:
                attrs = json.loads(read_text(fields["json"], where))
            except json.JSONDecodeError as e:
                raise ArtalignError(
                    f"{where}: {fields['json'].name} is not JSON ({_one_line(e)})"
                ) from e
            if not isinstance(attrs, dict):
                raise ArtalignError(f"{where}: {fields['json'].name} is not a JSON object")
        text = attrs.pop("text", None)
        attrs.pop("file_name", None)
        if "txt" in fields:
            text = read_text(fields["txt"], where).strip()
        text = _caption(text, where, require_text)
        origin = f"{img.name} in shard {shard}"
        if compressed:  # no seeking inside a compressed stream: keep the bytes
            member = tar.extractfile(img)
            assert member is not None
            rec = Record(img.name, text, attrs, data=member.read(), origin=origin)
        else:
            span = (img.offset_data, img.size)
            rec = Record(img.name, text, attrs, path=shard, span=span, origin=origin)
        records.append(rec)
    return records


def _is_pattern(source: str) -> bool:
    return any(c in source for c in "*?[") or ("{" in source and "}" in source)


def _expand_shards(pattern: str) -> list[Path]:
    shards: list[Path] = []
    for part in braceexpand(pattern):
        if any(c in part for c in "*?["):
            shards += [Path(p) for p in sorted(glob.glob(part))]
        elif Path(part).is_file():
            shards.append(Path(part))
        else:
            raise ArtalignError(f"shard {part} (from pattern {pattern}) does not exist")
    if not shards:
        raise ArtalignError(f"no shards match {pattern}")
    return shards


def _read_shards(shards: Sequence[Path], require_text: bool) -> list[Record]:
    return [r for shard in shards for r in _read_shard(shard, require_text)]


# ----------------------------------------------------------------------------- entry point

_FORMATS_HINT = (
    "expected a folder with metadata.jsonl (imagefolder), a .csv or .parquet file, "
    "or webdataset .tar shards"
)


def _read_source(source: str | Path, require_text: bool) -> tuple[list[Record], Path]:
    """Detect the format; return the records and the folder whose opt_out.txt applies."""
    text = str(source)
    if _is_pattern(text) and not Path(text).exists():
        shards = _expand_shards(text)
        data_dir = Path(os.path.commonpath([p.resolve().parent for p in shards]))
        return _read_shards(shards, require_text), data_dir
    path = Path(source)
    if not path.exists():
        if path.suffix:
            raise ArtalignError(f"data file {path} does not exist")
        raise ArtalignError(
            f"data folder {path} does not exist; make one with `artalign data make --out {path}`"
        )
    if path.is_dir():
        for name in METADATA_FILES:
            if (path / name).is_file():
                return _read_file(path / name, require_text), path
        shards = sorted(p for p in path.iterdir() if p.name.endswith(SHARD_SUFFIXES))
        if shards:
            return _read_shards(shards, require_text), path
        raise ArtalignError(f"cannot tell the format of folder {path}: {_FORMATS_HINT}")
    return _read_file(path, require_text), path.parent


def _read_file(path: Path, require_text: bool) -> list[Record]:
    name = path.name.lower()
    if name.endswith(".jsonl"):
        return _read_jsonl(path, require_text)
    if name.endswith(".csv"):
        return _read_csv(path, require_text)
    if name.endswith(".parquet"):
        return _read_parquet(path, require_text)
    if name.endswith(SHARD_SUFFIXES):
        return _read_shard(path, require_text)
    raise ArtalignError(f"cannot tell the format of {path}: {_FORMATS_HINT}")


def filter_opt_out(records: Iterable[Record], entries: set[str]) -> list[Record]:
    """Drop every record whose id (file_name or stem) or image sha256 is in `entries`."""
    records = list(records)
    if not entries:
        return records
    # Hashing reads every image, so only do it when the list actually holds digests.
    by_hash = any(is_sha256(e) for e in entries)
    return [
        r for r in records if not (r.names() & entries) and not (by_hash and r.sha256() in entries)
    ]


def load_records(
    source: str | Path,
    opt_out: str | Path | Iterable[str] | None = None,
    require_text: bool = True,
) -> list[Record]:
    """All records of the data set at `source`, minus opted-out items.

    `opt_out` is the path of an opt-out list or its entries already loaded; the data folder's own
    opt_out.txt always applies too. `require_text=False` allows uncaptioned images (text "").
    """
    records, data_dir = _read_source(source, require_text)
    if not records:
        raise ArtalignError(f"data set {source} has no items")
    if opt_out is None or isinstance(opt_out, (str, Path)):
        entries = load_opt_out(opt_out, data_dir)
    else:
        entries = set(opt_out) | load_opt_out(None, data_dir)
    return filter_opt_out(records, entries)


# ----------------------------------------------------------------------------- torch dataset

# (image, text, attrs, generator) -> (pixel_values, text, attrs); see transforms.ImageTextTransform.
Transform = Callable[[Image.Image, str, dict, "torch.Generator | None"], tuple]


class ImageTextDataset(torch.utils.data.Dataset):
    """Map-style dataset of records: decodes each image and applies a caption-aware transform.

    With `seed`, item i in epoch e always gets the same augmentation, whichever worker loads it;
    call `set_epoch` to draw new augmentations each epoch.
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: Transform | None = None,
        seed: int | None = None,
    ) -> None:
        if transform is None:
            transform = ImageTextTransform()
        self.records = list(records)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        generator = None
        if self.seed is not None:
            mixed = (self.seed * 1_000_003 + self.epoch) * 1_000_033 + index
            generator = torch.Generator().manual_seed(mixed % (2**63))
        pixel_values, text, attrs = self.transform(rec.load_image(), rec.text, rec.attrs, generator)
        return {"pixel_values": pixel_values, "text": text, "attrs": attrs, "id": rec.id}


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack pixel_values into (B, C, H, W); keep text, attrs and id as lists."""
    return {
        "pixel_values": torch.stack([b["pixel_values"] for b in batch]),
        "text": [b["text"] for b in batch],
        "attrs": [b["attrs"] for b in batch],
        "id": [b["id"] for b in batch],
    }
