"""`artalign align dpo` through the real entry point: a 2-step micro run, plain diffusers loads
its LoRA, resume extends it, bad input exits 2 with one line."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from base_models.cli_main import main
from base_models.generator import Generator
from tests.base_models.sd_fixtures import make_tiny_sd_folder


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return make_tiny_sd_folder(tmp_path_factory.mktemp("dpo_cli") / "sd")


@pytest.fixture(scope="module")
def run(sd_folder, pref_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo_cli") / "run"
    rc = main(
        [
            "align",
            "dpo",
            "--model",
            str(sd_folder),
            "--db",
            str(pref_store.db),
            "--out",
            str(out),
            "--preset",
            "micro",
            "lr=0.01",
            "beta=100",
        ]
    )
    assert rc == 0
    return out


def test_a_micro_run_writes_every_file(run, sd_folder, pref_store):
    for name in (
        "lora/pytorch_lora_weights.safetensors",
        "checkpoint/state.json",
        "train_config.yaml",
        "log.jsonl",
        "metrics.json",
        "samples.png",
    ):
        assert (run / name).is_file(), name
    cfg = yaml.safe_load((run / "train_config.yaml").read_text())
    assert cfg["lr"] == 0.01 and cfg["beta"] == 100.0 and cfg["max_steps"] == 2
    assert cfg["model"] == str(sd_folder) and cfg["pairs"] == str(pref_store.db)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert {"loss", "implicit_acc", "margin", "lr"} <= set(log[0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 <= metrics["heldout_implicit_acc"] <= 1
    assert metrics["data"]["heldout_pairs"] == 4


def test_plain_diffusers_loads_the_lora(run, sd_folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(sd_folder, safety_checker=None)
    pipe.load_lora_weights(run / "lora")
    ours = Generator.from_folder(sd_folder)
    ours.attach_lora(run / "lora")
    base = Generator.from_folder(sd_folder)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor(500)
    states = ours.encode_prompts(["a red circle", "a blue square"])
    with torch.no_grad():
        a = pipe.unet(x, t, encoder_hidden_states=states).sample
        b = ours.unet(x, t, encoder_hidden_states=states).sample
        c = base.unet(x, t, encoder_hidden_states=states).sample
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # the adapters trained: not the base model


def test_resume_extends_the_run(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["align", "dpo", "--out", str(copy), "--resume", "max_steps=3"]) == 0
    log = [json.loads(x) for x in (copy / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert json.loads((copy / "checkpoint/state.json").read_text())["step"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "{tmp}/none.db"], "does not exist"),
        (["--db", "{db}", "--pairs", "{tmp}/x.jsonl"], "not both"),
        (["--db", "{db}", "beta=-1"], "beta must be > 0"),
        (["--db", "{db}", "nope=1"], "unknown config key 'nope'"),
        (["--db", "{db}", "--resume"], "no checkpoint"),
        ([], "pass --db STORE or --pairs FILE"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, sd_folder, pref_store, tmp_path, capsys):
    subs = {"tmp": tmp_path, "db": pref_store.db}
    argv = [
        "align",
        "dpo",
        "--model",
        str(sd_folder),
        "--out",
        str(tmp_path / "o"),
        "--preset",
        "micro",
        *(a.format(**subs) for a in args),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_an_existing_run_is_not_overwritten(run, pref_store, capsys):
    assert main(["align", "dpo", "--out", str(run), "--db", str(pref_store.db)]) == 2
    assert "--resume" in capsys.readouterr().err
