"""Load and check a local Stable Diffusion folder (diffusers layout), from local files only.

Every generator artalign touches is such a folder: `model_index.json`, `unet/`, `vae/`,
`text_encoder/`, `tokenizer/`, `scheduler/` (SD-1.x/2.x from the hub, or one artalign trained).
The configs are checked before any weights load, so a wrong folder fails in milliseconds with
a message that names the file and the fix. Weights load from safetensors only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.io_utils import looks_like_hub_id, missing_path_error

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_CONFIG_FILES = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("tokenizer_config.json", "tokenizer.json", "vocab.json"),
    "scheduler": ("scheduler_config.json",),
}


@dataclass
class SDComponents:
    """The five parts of an SD model, loaded and checked, plus where they came from."""

    path: Path
    unet: Any  # diffusers UNet2DConditionModel
    vae: Any  # diffusers AutoencoderKL
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler_config: dict[str, Any] = field(default_factory=dict)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along a side: 2 ** (number of VAE blocks - 1)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtalignError(f"cannot read {path} ({e}); the SD folder is damaged") from None
    if not isinstance(data, dict):
        raise ArtalignError(f"{path} does not hold a JSON object; the SD folder is damaged")
    return data


def check_sd_folder(path: str | Path) -> dict[str, dict[str, Any]]:
    """Check the layout and the configs of an SD folder; return each model's config.

    Raises ArtalignError for a hub id, a missing folder, a folder that is not an SD model,
    pickled-only weights, or parts that do not fit each other (text width vs the UNet's
    cross-attention width, VAE latent channels vs UNet channels).
    """
    text = str(path)
    folder = Path(text)
    if not folder.exists():
        if looks_like_hub_id(text):
            raise missing_path_error(text)
        raise ArtalignError(f"model folder {folder} does not exist; train one or fix the path")
    if not folder.is_dir():
        raise ArtalignError(f"{folder} is a file; pass a Stable Diffusion folder")
    if not (folder / "model_index.json").is_file():
        raise ArtalignError(
            f"{folder} is not a Stable Diffusion folder (no model_index.json); pass a diffusers "
            "folder with unet/, vae/, text_encoder/, tokenizer/, scheduler/"
        )
    index = _read_json(folder / "model_index.json")
    configs: dict[str, dict[str, Any]] = {}
    for name in COMPONENTS:
        sub = folder / name
        if name not in index or not sub.is_dir():
            raise ArtalignError(
                f"{folder} is missing the {name} component (model_index.json or {name}/); "
                "pass a complete Stable Diffusion folder"
            )
        found = [sub / f for f in _CONFIG_FILES[name] if (sub / f).is_file()]
        if not found:
            raise ArtalignError(f"{sub} has no {_CONFIG_FILES[name][0]}; the SD folder is damaged")
        if name in ("unet", "vae", "text_encoder", "scheduler"):
            configs[name] = _read_json(found[0])
        if name in ("unet", "vae", "text_encoder") and not any(sub.glob("*.safetensors")):
            pickled = any(sub.glob("*.bin")) or any(sub.glob("*.ckpt"))
            why = (
                "only pickled .bin weights, which artalign never loads" if pickled else "no weights"
            )
            raise ArtalignError(f"{sub} has {why}; save the model with safetensors")
    text_width = configs["text_encoder"].get("hidden_size")
    cross_dim = configs["unet"].get("cross_attention_dim")
    if text_width != cross_dim:
        raise ArtalignError(
            f"{folder}: the text encoder's hidden size ({text_width}) does not match the UNet's "
            f"cross_attention_dim ({cross_dim}); pair the UNet with the text encoder it was "
            "trained with"
        )
    latent = configs["vae"].get("latent_channels")
    unet_in = configs["unet"].get("in_channels")
    if latent != unet_in:
        raise ArtalignError(
            f"{folder}: the VAE has {latent} latent channels but the UNet takes {unet_in}; pair "
            "the UNet with the VAE it was trained on"
        )
    if configs["scheduler"].get("thresholding", False):
        raise ArtalignError(f"{folder}: dynamic thresholding schedulers are not supported")
    return configs


def load_sd_folder(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> SDComponents:
    """Load a local SD folder's UNet, VAE, text encoder and tokenizer (eval mode, no grads).

    The scheduler is kept as its config: the generator samples with DDIM on the folder's
    noise schedule whatever scheduler class the folder names (SD 1.5 ships PNDM).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    configs = check_sd_folder(path)
    folder = Path(path)
    loaders = {
        "unet": lambda: UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", local_files_only=True, use_safetensors=True, torch_dtype=dtype
        ),
        "vae": lambda: AutoencoderKL.from_pretrained(
            folder, subfolder="vae", local_files_only=True, use_safetensors=True, torch_dtype=dtype
        ),
        "text_encoder": lambda: CLIPTextModel.from_pretrained(
            folder / "text_encoder", local_files_only=True, use_safetensors=True
        ),
        "tokenizer": lambda: CLIPTokenizer.from_pretrained(
            folder / "tokenizer", local_files_only=True
        ),
    }
    parts: dict[str, Any] = {}
    for name, load in loaders.items():
        try:
            part = load()
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
            raise ArtalignError(
                f"cannot load {folder / name} ({type(e).__name__}: {e}); its files are damaged "
                "or incomplete: copy or save the model folder again, or use another one"
            ) from e
        if name == "text_encoder":
            part = part.to(dtype=dtype)
        if name != "tokenizer":  # diffusers models were loaded in `dtype` already
            part = part.to(device).eval().requires_grad_(False)
        parts[name] = part
    return SDComponents(path=folder, scheduler_config=configs["scheduler"], **parts)


def check_prompt_lengths(path: str | Path, prompts: list[str]) -> None:
    """Refuse a prompt longer than the SD folder's text context (it would be cut silently).

    Reads only the folder's tokenizer, so it fails before any model is loaded.
    """
    from transformers import CLIPTokenizer

    check_sd_folder(path)
    tokenizer = CLIPTokenizer.from_pretrained(Path(path) / "tokenizer", local_files_only=True)
    limit = tokenizer.model_max_length
    for i, text in enumerate(prompts):
        n = len(tokenizer(text).input_ids)
        if n > limit:
            raise ArtalignError(
                f"prompt {i + 1} is {n} tokens; the model reads at most {limit}: shorten it"
            )
