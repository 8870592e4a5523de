"""Micro inputs of the bad-input corpus, built once per session (a few seconds in all).

`build_inputs(root, micro_data, micro_clip)` writes every broken or odd input the cases name and
returns {placeholder: path}; `cases.py` refers to them as "{name}". Inputs are read-only: the
suite hashes each one a case names before and after the case and fails if it changed.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import yaml

LONG_PROMPT = " ".join(["a very large red circle on a white background"] * 20)


def _copy_data(src: Path, dst: Path) -> tuple[Path, str]:
    """A copy of the data folder `src` at `dst` and the name of its first image."""
    shutil.copytree(src, dst)
    first = sorted(dst.rglob("*.png"))[0]
    return dst, str(first.relative_to(dst))


def _broken_data(root: Path, micro_data: Path) -> dict[str, Path]:
    trunc, name = _copy_data(micro_data, root / "trunc_png_data")
    png = trunc / name
    png.write_bytes(png.read_bytes()[:60])
    fake, name = _copy_data(micro_data, root / "fake_png_data")
    (fake / name).write_text("this is not an image\n")
    bad, _ = _copy_data(micro_data, root / "bad_jsonl_data")
    lines = (bad / "metadata.jsonl").read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]
    (bad / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return {"trunc_png_data": trunc, "fake_png_data": fake, "bad_jsonl_data": bad}


def _broken_models(root: Path, tiny_sd: Path) -> dict[str, Path]:
    corrupt = root / "sd_corrupt"
    shutil.copytree(tiny_sd, corrupt)
    weights = corrupt / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    missing = root / "sd_missing_unet"
    shutil.copytree(tiny_sd, missing)
    shutil.rmtree(missing / "unet")
    return {"sd_corrupt": corrupt, "sd_missing_unet": missing, "vae": tiny_sd / "vae"}


def _stores(root: Path) -> dict[str, Path]:
    from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
    from labeling_app.store import Store

    store = root / "store" / "labels.db"
    store.parent.mkdir()
    with Store(store, create=True) as s:
        plan = BatchPlan(k=2, kinds=("pair",), overlap=1, seed=0)
        batch = make_batch(
            s, ["a red circle", "a blue square"], ProceduralSource(size=16), plan, "b"
        )
        rater = s.add_rater("solo")
        for task in s.tasks(batch):
            s.record_judgment(
                task.task_id, rater, {"choice": "left"}, client_token=str(task.task_id)
            )
    not_store = root / "not_store.db"
    with sqlite3.connect(not_store) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER, text TEXT)")
    newer = root / "newer" / "labels.db"
    newer.parent.mkdir()
    with Store(newer, create=True):
        pass
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE schema_version SET version = version + 10")
    wide = root / "wide" / "labels.db"  # each task needs 3 judgments
    wide.parent.mkdir()
    with Store(wide, create=True) as s:
        plan = BatchPlan(k=2, kinds=("pair",), overlap=3, seed=0)
        make_batch(s, ["a red circle"], ProceduralSource(size=16), plan, "wide")
    profile = yaml.safe_load(Path("configs/raters/default.yaml").read_text())
    two_raters = root / "two_raters.yaml"
    two_raters.write_text(yaml.safe_dump({**profile, "name": "two", "n_raters": 2}))
    return {
        "store": store,
        "not_store": not_store,
        "newer_store": newer,
        "wide_store": wide,
        "two_raters": two_raters,
    }


def _files(root: Path) -> dict[str, Path]:
    import pandas as pd

    paths = {
        "empty_dir": root / "empty_dir",
        "a_file": root / "a_file.txt",
        "prompts": root / "prompts.txt",
        "empty_prompts": root / "empty_prompts.txt",
        "long_prompts": root / "long_prompts.txt",
        "yaml_unknown": root / "unknown_key.yaml",
        "yaml_wrong_type": root / "wrong_type.yaml",
        "loop_wrong_type": root / "loop_wrong_type.yaml",
        "bad_parquet": root / "no_columns.parquet",
        "other_run": root / "other_run",
    }
    paths["empty_dir"].mkdir()
    paths["a_file"].write_text("just a file\n")
    paths["prompts"].write_text("a red circle\na blue square\n")
    paths["empty_prompts"].write_text("\n  \n")
    paths["long_prompts"].write_text(LONG_PROMPT + "\n")
    paths["yaml_unknown"].write_text(yaml.safe_dump({"no_such_key": 1}))
    paths["yaml_wrong_type"].write_text(yaml.safe_dump({"seed": "not a number"}))
    paths["loop_wrong_type"].write_text(yaml.safe_dump({"rounds": "many"}))
    pd.DataFrame({"caption": ["a red circle"], "score": [1.0]}).to_parquet(paths["bad_parquet"])
    other = paths["other_run"]
    (other / "images").mkdir(parents=True)
    (other / "images" / "00000.png").write_bytes(b"\x89PNG another run")
    (other / "manifest.jsonl").write_text('{"file": "images/00000.png"}\n')
    (other / "metrics.json").write_text('{"from": "another run"}\n')
    return paths


def _oracle(root: Path) -> Path:
    import torch

    from base_models.oracle import AttributeOracle

    torch.manual_seed(0)
    return AttributeOracle(channels=(4, 8, 8), hidden=8).eval().save(root / "oracle")


def build_inputs(root: Path, micro_data: Path, micro_clip: Path) -> dict[str, Path]:
    from tests.base_models.sd_fixtures import make_tiny_sd_folder

    tiny_sd = make_tiny_sd_folder(root / "tiny_sd")
    paths = {"data": micro_data, "clip": micro_clip, "sd": tiny_sd, "oracle": _oracle(root)}
    paths |= _broken_data(root, micro_data)
    paths |= _broken_models(root, tiny_sd)
    paths |= _stores(root)
    paths |= _files(root)
    paths["missing"] = root / "does_not_exist"
    return paths
