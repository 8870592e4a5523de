"""The `artalign` console script: help everywhere, smoke runs, one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from base_models.cli_main import build_app, main


def _commands():
    import typer

    root = typer.main.get_command(build_app())
    for name, group in root.commands.items():
        yield [name]
        for sub in getattr(group, "commands", {}):
            yield [name, sub]


@pytest.mark.parametrize("args", [[]] + list(_commands()), ids=lambda a: " ".join(a) or "root")
def test_help_on_every_command(args, capsys):
    assert main(args + ["--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_groups_of_this_stage_are_installed():
    import typer

    names = set(typer.main.get_command(build_app()).commands)
    assert {"data", "oracle", "base"} <= names


def test_data_make_smoke(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "make", "--out", str(out), "--n", "5", "--seed", "2"]) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    assert len((out / "metadata.jsonl").read_text().splitlines()) == 5
    prov = json.loads((out / "provenance.json").read_text())
    assert len(prov["items"]) == 5


def test_data_make_flags_and_overrides(tmp_path):
    out = tmp_path / "d"
    args = [
        "data",
        "make",
        "--out",
        str(out),
        "--n",
        "8",
        "--split",
        "heldout",
        "--exclude-style",
        "flat",
        "--stereotype",
        "heart:large:1.0",
        "max_objects=1",
    ]
    assert main(args) == 0
    recs = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert all(r["count"] == 1 and r["style"] != "flat" for r in recs)
    assert all(o["size"] == "large" for r in recs for o in r["objects"] if o["shape"] == "heart")


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "make", "--out", "{tmp}/d", "bogus=1"], "unknown config key 'bogus'"),
        (["data", "make", "--out", "{tmp}/d", "--preset", "nope"], "unknown preset 'nope'"),
        (["data", "make", "--out", "{tmp}/d", "--split", "test"], "unknown split"),
        (["data", "make", "--out", "{tmp}/d", "--exclude-style", "cubist"], "unknown style"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_console_script_has_no_traceback(tmp_path):
    exe = shutil.which("artalign") or str(Path(sys.executable).with_name("artalign"))
    proc = subprocess.run(
        [exe, "data", "make", "--out", str(tmp_path / "d"), "--n", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "n must be >= 1" in proc.stderr


def test_usage_errors_say_what_is_wrong_without_a_traceback(tmp_path, capsys):
    # typer >= 0.20 raises the usage errors of its own copy of click; they are caught too
    assert main(["data", "make", "--out", str(tmp_path / "d"), "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --no-such-flag" in err and "Traceback" not in err
    assert main(["data", "make", "--out", str(tmp_path / "d"), "--help-config"]) == 0
    assert "DataConfig" in capsys.readouterr().out
    assert not (tmp_path / "d").exists()


def test_data_check_honours_opt_out(tmp_path, micro_data, capsys):
    first = (micro_data / "metadata.jsonl").read_text().splitlines()[0]
    opt = tmp_path / "opt.txt"
    opt.write_text(json.loads(first)["file_name"] + "\n")
    assert main(["data", "check", "--data", str(micro_data), "--opt-out", str(opt)]) == 0
    assert "15 items usable" in capsys.readouterr().out


def test_data_check_missing_folder(tmp_path, capsys):
    assert main(["data", "check", "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_preview_writes_grid(tmp_path, micro_data):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["data", "preview", "--data", str(micro_data), "--out", str(out), "--n", "4"]) == 0
    im = Image.open(out)
    assert im.size == (4 * (96 + 2) + 2, 96 + 4)
