"""`artalign reward train` and `artalign reward score` through the real entry point."""

from __future__ import annotations

import json
import shutil

import pytest

from base_models.cli_main import main
from rlhf.reward.loaders import load_from_store


@pytest.fixture(scope="module")
def trained(micro_clip, pref_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "rm"
    rc = main(
        [
            "reward",
            "train",
            "--data",
            str(pref_store.db),
            "--out",
            str(out),
            "--backbone",
            str(micro_clip),
            "--preset",
            "micro",
            "--head",
            "mlp",
            "--batch",
            "toy",
            "epochs=3",
        ]
    )
    assert rc == 0
    return out


def test_train_writes_the_model(trained, capsys):
    for name in ("reward.safetensors", "reward_config.json", "metrics.json", "split.json"):
        assert (trained / name).is_file()
    config = json.loads((trained / "reward_config.json").read_text())
    assert config["training"]["epochs"] == 3 and config["head"]["kind"] == "mlp"
    assert config["data"]["batch"] == "toy"
    assert main(["reward", "train", "--help-config", "--data", "x", "--out", "y"]) == 0
    assert "backbone_kind" in capsys.readouterr().out


def _image_folder(pref_store, tmp_path, n=6):
    data = load_from_store(pref_store.db)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in data.used_images()[:n]:
        shutil.copy(data.images[i], folder / f"{i:03d}.png")
    return folder


def test_score_a_folder_and_a_manifest(trained, pref_store, tmp_path, capsys):
    folder = _image_folder(pref_store, tmp_path)
    # the PNGs carry their prompts (text chunk written by `label batch`)
    assert (
        main(
            [
                "reward",
                "score",
                "--model",
                str(trained),
                "--images",
                str(folder),
                "--out",
                str(tmp_path / "s.jsonl"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(isinstance(r["reward"], float) for r in rows)
    assert "images/s" in capsys.readouterr().out
    manifest = [
        {"file": f"images/{p.name}", "prompt": "a large red circle"}
        for p in sorted(folder.iterdir())
    ]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert (
        main(
            [
                "reward",
                "score",
                "--model",
                str(trained),
                "--images",
                str(tmp_path / "manifest.json"),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "file,prompt,reward" and len(lines) == 7
    (tmp_path / "one.txt").write_text("a small blue square\n")
    assert (
        main(
            [
                "reward",
                "score",
                "--model",
                str(trained),
                "--images",
                str(folder),
                "--prompts",
                str(tmp_path / "one.txt"),
                "--out",
                str(tmp_path / "t.jsonl"),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert {r["prompt"] for r in rows} == {"a small blue square"}


def _fails(args, capsys, match):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and match in err, err


def test_train_bad_input_exits_2(micro_clip, pref_store, make_store, tmp_path, capsys):
    out = str(tmp_path / "rm")
    base = ["reward", "train", "--out", out, "--backbone", str(micro_clip), "--preset", "micro"]
    ties = make_store(["a red circle", "a blue square"], answer=lambda t: {"choice": "tie"})
    _fails([*base, "--data", str(ties)], capsys, "is a tie")
    bad = make_store(["a star"], answer=lambda t: {"choice": "both_bad"}, name="bad.db")
    _fails([*base, "--data", str(bad)], capsys, "no usable judgments")
    db = str(pref_store.db)
    _fails([*base, "--data", db, "--backbone-kind", "blip"], capsys, "backbone_kind='blip'")
    _fails([*base, "--data", db, "--backbone", str(tmp_path / "nope")], capsys, "does not exist")
    _fails([*base, "--data", db, "nonsense=1"], capsys, "unknown config key 'nonsense'")
    _fails([*base, "--data", str(tmp_path / "none.parquet")], capsys, "does not exist")
    assert not (tmp_path / "rm").exists()


def test_score_bad_input_exits_2(trained, micro_clip, pref_store, tmp_path, capsys):
    folder = _image_folder(pref_store, tmp_path, n=2)
    out = str(tmp_path / "s.jsonl")
    _fails(
        ["reward", "score", "--model", str(micro_clip), "--images", str(folder), "--out", out],
        capsys,
        "looks like a backbone",
    )
    broken = sorted(folder.iterdir())[0]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "one.txt").write_text("a star\n")
    _fails(
        [
            "reward",
            "score",
            "--model",
            str(trained),
            "--images",
            str(folder),
            "--prompts",
            str(tmp_path / "one.txt"),
            "--out",
            out,
        ],
        capsys,
        f"image {broken} cannot be loaded",
    )
    _fails(
        [
            "reward",
            "score",
            "--model",
            str(trained),
            "--images",
            str(tmp_path / "none"),
            "--out",
            out,
        ],
        capsys,
        "neither a folder nor",
    )
    assert not (tmp_path / "s.jsonl").exists()
