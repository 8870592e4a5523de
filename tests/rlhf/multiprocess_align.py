"""Run by `accelerate launch` from test_multiprocess.py: DDPO, then DPO, one epoch each on the
tiny SD folder; every process then writes its own in-memory LoRA weights to
OUT/{ddpo,dpo}_rank{R}.safetensors, so the test can check that the processes stayed in step.

    python -m tests.rlhf.multiprocess_align SD_FOLDER PROMPTS_FILE LABEL_DB OUT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from base_models.config import load_config
from base_models.generator import Generator
from rlhf.align.checkpoint import LoraWeights
from rlhf.align.ddpo import train_ddpo
from rlhf.align.ddpo_config import DDPOConfig
from rlhf.align.dpo import train_dpo
from rlhf.align.dpo_config import DPOConfig

loaded: list[Generator] = []
_from_folder = Generator.from_folder.__func__


def _keep(cls, *args, **kwargs):  # the trainers load their generator here: keep a handle
    gen = _from_folder(cls, *args, **kwargs)
    loaded.append(gen)
    return gen


def main() -> None:
    sd, prompts, db, out = sys.argv[1:5]
    out = Path(out)
    Generator.from_folder = classmethod(_keep)
    rank = os.environ["RANK"]  # set by the launcher
    ddpo = load_config(
        DDPOConfig,
        "micro",
        overrides={
            "model": sd,
            "prompts": prompts,
            "reward": "brightness",
            "epochs": 1,
            "prompts_per_epoch": 2,
            "images_per_prompt": 2,
            "train_batch_size": 2,
        },
    )
    train_ddpo(ddpo, out / "ddpo")
    save_file(LoraWeights(loaded[-1].unet).state_dict(), str(out / f"ddpo_rank{rank}.safetensors"))
    dpo = load_config(
        DPOConfig,
        "micro",
        overrides={"model": sd, "pairs": db, "batch_size": 4, "max_steps": 2, "sample_prompts": 0},
    )
    train_dpo(dpo, out / "dpo", log=None)
    save_file(LoraWeights(loaded[-1].unet).state_dict(), str(out / f"dpo_rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
