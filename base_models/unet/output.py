"""What train-unet writes besides the checkpoint: the SD folder, sample grids, EMA state.

The out folder is a Stable Diffusion folder that plain `StableDiffusionPipeline.from_pretrained`
loads. `text_encoder/` and `tokenizer/` are exported from the CLIP when training starts (see
base_models.text_encoder); at the end `StableDiffusionPipeline.save_pretrained` writes the rest
to a temporary folder, and unet/ (EMA weights), vae/ and scheduler/ are renamed in one by one.
model_index.json goes last, so the folder only claims to be a pipeline once it is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from base_models.generator import Generator, SDComponents
from base_models.imaging import make_grid
from base_models.io_utils import replace_dir

SWAPPED_PARTS = ("unet", "vae", "text_encoder", "scheduler")
MODEL_INDEX = "model_index.json"
EMA_PREFIX = "ema."


def save_sd_folder(
    out: Path, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any
) -> Path:
    """Write the pipeline's parts into `out` (an SD folder), each part atomically."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = Path(tempfile.mkdtemp(prefix=".pipeline.", dir=out))
    try:
        tmp.chmod(0o755)
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        (out / MODEL_INDEX).unlink(missing_ok=True)
        for part in SWAPPED_PARTS:
            replace_dir(tmp / part, out / part)
        os.replace(tmp / MODEL_INDEX, out / MODEL_INDEX)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


@torch.no_grad()
def sample_grid(
    unet: Any,
    vae: Any,
    text_encoder: Any,
    tokenizer: Any,
    scheduler_config: dict[str, Any],
    prompts: Sequence[str],
    steps: int,
    guidance: float,
    out: Path,
) -> Image.Image:
    """DDIM samples of `prompts` (seeds 0, 1, ...) with base_models.generator, as one grid."""
    parts = SDComponents(
        path=out,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_config=scheduler_config,
    )
    device = next(unet.parameters()).device
    generator = Generator(parts, device=device)
    images = generator.sample(list(prompts), 0, steps=steps, guidance=guidance).images
    return make_grid(images, ncols=min(8, len(images)), scale=2)


def ema_tensors(ema: Any) -> dict[str, torch.Tensor]:
    """EMA shadow weights as checkpoint tensors (`ema.00000`, ... in parameter order)."""
    return {f"{EMA_PREFIX}{i:05d}": p.detach().cpu() for i, p in enumerate(ema.shadow_params)}


def ema_meta(ema: Any) -> dict[str, Any]:
    """The EMA's scalar state (decay, optimization_step, warmup) for state.json."""
    return {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}


def load_ema(ema: Any, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore an EMAModel from `ema_meta` and `ema_tensors` output."""
    keys = sorted(k for k in tensors if k.startswith(EMA_PREFIX))
    device = ema.shadow_params[0].device
    ema.load_state_dict({**meta, "shadow_params": [tensors[k].to(device) for k in keys]})
