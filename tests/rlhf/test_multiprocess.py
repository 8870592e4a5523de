"""DDPO and Diffusion-DPO under `accelerate launch --num_processes 2` on the CPU (gloo).

Each process trains on its share and the LoRA gradients are averaged by hand (the adapters are
not DDP-wrapped), so both processes must end with identical weights. Accelerate runs a CPU-only
multi-process job through its torchrun launcher (`--multi_gpu`) with ACCELERATE_USE_CPU set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.base_models.sd_fixtures import make_tiny_sd_folder

REPO = Path(__file__).resolve().parents[2]


def test_two_processes_end_with_identical_lora_weights(tmp_path, pref_store):
    sd = make_tiny_sd_folder(tmp_path / "sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green star\n")
    launcher = Path(sys.executable).with_name("accelerate")
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "tests.rlhf.multiprocess_align",
        str(sd),
        str(prompts),
        str(pref_store.db),
        str(tmp_path / "out"),
    ]
    run = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    for trainer in ("ddpo", "dpo"):
        a = load_file(str(tmp_path / "out" / f"{trainer}_rank0.safetensors"))
        b = load_file(str(tmp_path / "out" / f"{trainer}_rank1.safetensors"))
        assert a.keys() == b.keys() and len(a) > 0
        for k in a:
            assert torch.equal(a[k], b[k]), f"{trainer}: {k} differs between the processes"
        assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)  # it trained
        assert (tmp_path / "out" / trainer / "lora" / "pytorch_lora_weights.safetensors").is_file()
