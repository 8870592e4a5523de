"""Data loading: every format gives the same records, opt-out, provenance, errors, transforms."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from base_models.data import (
    ImageTextDataset,
    ImageTextTransform,
    collate,
    load_opt_out,
    load_records,
    mirror_text,
    write_provenance,
)
from base_models.errors import ArtalignError

# Three tiny items in the procedural world's metadata layout.
ITEMS = [
    {
        "file_name": "images/00000.png",
        "text": "a large red circle at the top left on a white background, striped style",
        "objects": [
            {
                "shape": "circle",
                "colour": "red",
                "size": "large",
                "row": 0,
                "col": 0,
                "position": "top left",
            }
        ],
        "count": 1,
        "background": "white",
        "style": "striped",
        "unsafe": False,
    },
    {
        "file_name": "images/00001.png",
        "text": "a small blue square in the center and a green star at the bottom right",
        "objects": [
            {
                "shape": "square",
                "colour": "blue",
                "size": "small",
                "row": 1,
                "col": 1,
                "position": "center",
            },
            {
                "shape": "star",
                "colour": "green",
                "size": "medium",
                "row": 2,
                "col": 2,
                "position": "bottom right",
            },
        ],
        "count": 2,
        "background": "black",
        "style": "flat",
        "unsafe": False,
    },
    {
        "file_name": "images/00002.png",
        "text": "a medium pink heart on a gray background, dotted style",
        "objects": [
            {
                "shape": "heart",
                "colour": "pink",
                "size": "medium",
                "row": 1,
                "col": 0,
                "position": "middle left",
            }
        ],
        "count": 1,
        "background": "gray",
        "style": "dotted",
        "unsafe": False,
    },
]


def png_bytes(index: int, size: int = 8) -> bytes:
    """A left/right-asymmetric image (red left half, blue right half), distinct per index."""
    im = Image.new("RGB", (size, size), (0, 0, 200 + index))
    for x in range(size // 2):
        for y in range(size):
            im.putpixel((x, y), (200 + index, 10, 10))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def attrs_of(item: dict) -> dict:
    return {k: v for k, v in item.items() if k not in ("file_name", "text")}


def write_imagefolder(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(ITEMS):
        (root / item["file_name"]).write_bytes(png_bytes(i))
    (root / "metadata.jsonl").write_text("".join(json.dumps(it) + "\n" for it in ITEMS))
    return root


def write_csv(root: Path) -> Path:
    import pandas as pd

    write_imagefolder(root)
    rows = [{**it, "objects": json.dumps(it["objects"])} for it in ITEMS]
    pd.DataFrame(rows).to_csv(root / "data.csv", index=False)
    return root / "data.csv"


def write_parquet_paths(root: Path) -> Path:
    write_imagefolder(root)
    rows = [{**attrs_of(it), "image": it["file_name"], "text": it["text"]} for it in ITEMS]
    pq.write_table(pa.Table.from_pylist(rows), root / "data.parquet")
    return root / "data.parquet"


def write_parquet_bytes(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = [{**it, "image": png_bytes(i)} for i, it in enumerate(ITEMS)]
    pq.write_table(pa.Table.from_pylist(rows), root / "data.parquet")
    return root / "data.parquet"


def write_parquet_hf_struct(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            **attrs_of(it),
            "text": it["text"],
            "image": {"bytes": png_bytes(i), "path": it["file_name"]},
        }
        for i, it in enumerate(ITEMS)
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "data.parquet")
    return root / "data.parquet"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    root: Path, per_shard: int = 2, mode: str = "w", suffix: str = ".tar"
) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(ITEMS), per_shard):
        path = root / f"train-{s // per_shard:03d}{suffix}"
        with tarfile.open(path, mode) as tar:
            for i in range(s, min(s + per_shard, len(ITEMS))):
                key = ITEMS[i]["file_name"].removesuffix(".png")
                _add(tar, key + ".png", png_bytes(i))
                _add(tar, key + ".txt", ITEMS[i]["text"].encode())
                _add(tar, key + ".json", json.dumps(attrs_of(ITEMS[i])).encode())
        shards.append(path)
    return shards


def expected() -> list[tuple]:
    return [
        (it["file_name"], it["text"], attrs_of(it), hashlib.sha256(png_bytes(i)).hexdigest())
        for i, it in enumerate(ITEMS)
    ]


def summary(records) -> list[tuple]:
    return [(r.id, r.text, r.attrs, r.sha256()) for r in records]


FORMATS = {
    "imagefolder": write_imagefolder,
    "csv": write_csv,
    "parquet_paths": write_parquet_paths,
    "parquet_bytes": write_parquet_bytes,
    "parquet_hf_struct": write_parquet_hf_struct,
    "wds_folder": lambda root: (write_shards(root), root)[1],
    "wds_brace": lambda root: (write_shards(root), f"{root}/train-{{000..001}}.tar")[1],
    "wds_glob": lambda root: (write_shards(root), f"{root}/train-*.tar")[1],
    "wds_single_gz": lambda root: write_shards(root, per_shard=3, mode="w:gz", suffix=".tar.gz")[0],
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_loads_the_same_records(tmp_path, fmt):
    source = FORMATS[fmt](tmp_path / "ds")
    records = load_records(source)
    assert summary(records) == expected()
    image = records[0].load_image()
    assert image.mode == "RGB" and image.size == (8, 8)
    assert image.getpixel((0, 0)) == (200, 10, 10)


def test_opt_out_by_hash_and_by_id(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    digest = hashlib.sha256(png_bytes(0)).hexdigest()
    opt = tmp_path / "withdrawn.txt"
    opt.write_text(f"# withdrawn by their owners\n\n{digest.upper()}\n00001  # by stem\n")
    assert [r.id for r in load_records(root, opt_out=opt)] == ["images/00002.png"]
    # Already-loaded entries work the same, with the full file_name as the id.
    assert [r.id for r in load_records(root, opt_out={"images/00002.png"})] == [
        "images/00000.png",
        "images/00001.png",
    ]


def test_opt_out_txt_in_data_folder_is_always_honoured(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    (root / "opt_out.txt").write_text("images/00002.png\n")
    assert [r.id for r in load_records(root)] == ["images/00000.png", "images/00001.png"]
    opt = tmp_path / "more.txt"
    opt.write_text("00000.png\n")
    assert [r.id for r in load_records(root, opt_out=opt)] == ["images/00001.png"]
    assert load_opt_out(opt, root) == {"00000.png", "images/00002.png"}


def test_opt_out_reaches_shards_and_parquet_bytes(tmp_path):
    digest = hashlib.sha256(png_bytes(1)).hexdigest()
    shards_dir = tmp_path / "shards"
    write_shards(shards_dir)
    (shards_dir / "opt_out.txt").write_text(digest + "\n")
    assert [r.id for r in load_records(shards_dir)] == ["images/00000.png", "images/00002.png"]
    pq_file = write_parquet_bytes(tmp_path / "pq")
    assert len(load_records(pq_file, opt_out={digest, "00000"})) == 1


def test_missing_opt_out_list_is_an_error(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    with pytest.raises(ArtalignError, match="opt-out list .*nope.txt does not exist"):
        load_records(root, opt_out=tmp_path / "nope.txt")


def test_provenance_hashes_match(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    out = write_provenance(root, ITEMS, source="procedural", licence="CC0-1.0", extra={"seed": 0})
    prov = json.loads(out.read_text())
    assert prov["created_by"] == "artalign" and prov["n"] == 3
    assert (prov["source"], prov["licence"], prov["extra"]) == (
        "procedural",
        "CC0-1.0",
        {"seed": 0},
    )
    want = [{"file_name": f, "sha256": h} for f, _, _, h in expected()]
    assert prov["items"] == want
    # Records (here from shards) hash to the same digests, so opt-out lists carry over.
    write_shards(tmp_path / "shards")
    out2 = write_provenance(tmp_path / "shards", load_records(tmp_path / "shards"), "copy", "CC0")
    assert json.loads(out2.read_text())["items"] == want
    assert not list(root.glob(".provenance.json.*"))  # no temp file left behind


def test_missing_folder_says_how_to_make_one(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ArtalignError) as err:
        load_records(missing)
    msg = str(err.value)
    assert f"data folder {missing} does not exist" in msg
    assert f"artalign data make --out {missing}" in msg


def test_corrupt_image_is_named_when_decoded(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    (root / "images/00001.png").write_bytes(b"\x89PNG not really")
    records = load_records(root)  # found only when decoding
    with pytest.raises(ArtalignError) as err:
        ImageTextDataset(records)[1]
    msg = str(err.value)
    assert "00001.png" in msg and "corrupt" in msg and "opt_out.txt" in msg
    # Truncated files are corrupt too.
    (root / "images/00002.png").write_bytes(png_bytes(2)[:40])
    with pytest.raises(ArtalignError, match="00002.png is corrupt"):
        records[2].load_image()


def test_metadata_without_text(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    rows = [dict(it) for it in ITEMS]
    del rows[1]["text"]
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ArtalignError) as err:
        load_records(root)
    msg = str(err.value)
    assert "metadata.jsonl line 2 has no `text`" in msg and "add a `text`" in msg
    assert load_records(root, require_text=False)[1].text == ""


def test_csv_without_text_column(tmp_path):
    root = tmp_path / "ds"
    write_imagefolder(root)
    (root / "data.csv").write_text("file_name,style\nimages/00000.png,flat\n")
    with pytest.raises(ArtalignError, match="has no `text` column; add a `text` column"):
        load_records(root / "data.csv")


def test_bad_json_line_names_file_and_line(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    lines = [json.dumps(it) for it in ITEMS]
    lines[2] = '{"file_name": "images/00002.png", "text": '
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ArtalignError) as err:
        load_records(root)
    assert f"{root / 'metadata.jsonl'} line 3 is not valid JSON" in str(err.value)


def test_missing_image_file_and_unknown_format(tmp_path):
    root = write_imagefolder(tmp_path / "ds")
    (root / "images/00000.png").unlink()
    with pytest.raises(ArtalignError, match="00000.png .*line 1.* does not exist"):
        load_records(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtalignError, match="cannot tell the format"):
        load_records(tmp_path / "empty")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ArtalignError, match="cannot tell the format"):
        load_records(tmp_path / "data.txt")


def test_broken_shard_is_named_on_one_line(tmp_path):
    shard = write_shards(tmp_path / "s")[0]
    shard.write_bytes(b"garbage" * 10)
    with pytest.raises(ArtalignError) as err:
        load_records(tmp_path / "s")
    assert f"shard {shard} is not a readable tar file" in str(err.value)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- transforms


def test_flip_mirrors_image_attributes_and_text():
    item = ITEMS[1]
    image = Image.open(io.BytesIO(png_bytes(1)))
    plain, _, _ = ImageTextTransform()(image, item["text"], attrs_of(item))
    flipped, text, attrs = ImageTextTransform(hflip=1.0)(image, item["text"], attrs_of(item))
    assert torch.equal(flipped, plain.flip(-1))
    assert text == "a small blue square in the center and a green star at the bottom left"
    assert [(o["col"], o["position"]) for o in attrs["objects"]] == [
        (1, "center"),
        (0, "bottom left"),
    ]
    assert item["objects"][1]["col"] == 2  # the record itself is untouched
    _, text0, attrs0 = ImageTextTransform(hflip=1.0)(image, ITEMS[0]["text"], attrs_of(ITEMS[0]))
    assert text0.startswith("a large red circle at the top right")
    assert (attrs0["objects"][0]["col"], attrs0["objects"][0]["position"]) == (2, "top right")


def test_no_flip_when_free_text_mentions_left_or_right():
    image = Image.open(io.BytesIO(png_bytes(0)))
    plain, _, _ = ImageTextTransform()(image, "", {})
    t = ImageTextTransform(hflip=1.0)
    out, text, _ = t(image, "a cat on the Left of a dog", {"artist": "x"})
    assert torch.equal(out, plain) and text == "a cat on the Left of a dog"
    out, text, _ = t(image, "a bright upright lamp", {})
    assert torch.equal(out, plain.flip(-1)) and text == "a bright upright lamp"


def test_mirror_text_keeps_case_and_whole_words():
    assert mirror_text("Left of the RIGHT-hand leftmost copyright") == (
        "Right of the LEFT-hand rightmost copyright"
    )


def test_transform_sizes_range_and_determinism():
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    out, _, _ = ImageTextTransform(8, crop="random")(image)
    assert out.shape == (3, 8, 8)
    assert out.min() >= -1.0 and out.max() <= 1.0 and out[0].mean() > 0.99
    noisy = Image.open(io.BytesIO(png_bytes(0, size=16)))
    t = ImageTextTransform(8, crop="random", hflip=0.5, brightness=0.3, contrast=0.3)
    a = [t(noisy, "", ITEMS[0], generator=s)[0] for s in range(6)]
    b = [t(noisy, "", ITEMS[0], generator=torch.Generator().manual_seed(s))[0] for s in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(a[0], x) for x in a[1:])
    seeded = [ImageTextTransform(8, hflip=0.5, brightness=0.3, seed=3) for _ in range(2)]
    assert torch.equal(seeded[0](noisy)[0], seeded[1](noisy)[0])
    with pytest.raises(ArtalignError, match="crop must be"):
        ImageTextTransform(8, crop="middle")


def test_dataset_and_collate(tmp_path):
    records = load_records(write_imagefolder(tmp_path / "ds"))
    t = ImageTextTransform(8, hflip=0.5, brightness=0.2)

    def run() -> list[dict]:
        loader = DataLoader(ImageTextDataset(records, t, seed=7), batch_size=2, collate_fn=collate)
        return list(loader)

    first, second = run(), run()
    batch = first[0]
    assert batch["pixel_values"].shape == (2, 3, 8, 8)
    assert batch["id"] == ["images/00000.png", "images/00001.png"]
    assert isinstance(batch["text"], list) and isinstance(batch["attrs"][0], dict)
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x["pixel_values"], y["pixel_values"]) and x["text"] == y["text"]
