"""Save, load and run CLIP models in open_clip's own formats, from local files only.

A saved model is a folder that open_clip itself reads (`local-dir:`): `open_clip_config.json`
(`model_cfg` + `preprocess_cfg`) and `open_clip_model.safetensors`. The same weights file also
loads by config name: `create_model_and_transforms("artalign-tiny", pretrained=FILE)`.
Nothing here downloads: a hub id or a pretrained tag is refused before open_clip sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, write_json

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
OWN_MODELS = tuple(sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")))
_HUB_PREFIXES = ("hf-hub:", "hf://", "https://", "http://")


def register_model_configs() -> None:
    """Make artalign's configs (artalign-tiny, artalign-micro) known to open_clip by name."""
    if not set(OWN_MODELS) <= set(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


def model_config(name: str) -> dict[str, Any]:
    """The architecture dict of a registered open_clip config (a copy), or an ArtalignError."""
    register_model_configs()
    cfg = open_clip.get_model_config(name) if name in open_clip.list_models() else None
    if cfg is None:
        raise ArtalignError(
            f"unknown open_clip model config {name!r}; artalign's own are {', '.join(OWN_MODELS)} "
            "(or add a JSON config with open_clip.add_model_config)"
        )
    return cfg


def preprocess_config(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """open_clip's default preprocessing at the model's image size.

    The defaults are what `create_model_and_transforms(name, pretrained=FILE)` uses, so both
    loading routes preprocess alike; training normalises with the same mean and std.
    """
    from open_clip.transform import PreprocessCfg

    pp = PreprocessCfg(size=model_cfg["vision_cfg"]["image_size"])
    return {
        "size": pp.size,
        "mean": list(pp.mean),
        "std": list(pp.std),
        "interpolation": pp.interpolation,
        "resize_mode": pp.resize_mode,
    }


def save_clip(
    model: torch.nn.Module,
    model_cfg: dict[str, Any],
    out: str | Path,
    notes: dict[str, Any] | None = None,
) -> Path:
    """Write `out/open_clip_config.json` and `out/open_clip_model.safetensors` (atomically).

    `notes` go under the config's "artalign" key (e.g. the training images' native size);
    open_clip reads only "model_cfg" and "preprocess_cfg", so the folder stays standard.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        # one metadata key: safetensors writes the metadata map in hash order, so with two
        # keys the file's bytes, and the fingerprints that hash them, change from run to run
        save_file(state, str(tmp), metadata={"format": "pt"})
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_config(model_cfg)}
    if notes:
        config["artalign"] = notes
    write_json(out / CONFIG_FILE, config)
    return out


def _check_no_hub(model: str) -> None:
    if model.startswith(_HUB_PREFIXES):
        raise ArtalignError(
            f"{model!r} is a hub id; artalign never downloads weights. Download the model "
            "yourself and pass its local folder (with open_clip_config.json)"
        )


def resolve_model(
    model: str | Path, pretrained: str | Path | None = None
) -> tuple[str, str | None]:
    """Turn a folder or a config name into open_clip's (model_name, pretrained) arguments.

    A folder must hold open_clip_config.json and weights; a config name needs `pretrained`, a
    local .safetensors file (a .pt/.bin would be unpickled, which artalign never does).
    """
    text = str(model)
    _check_no_hub(text)
    path = Path(text.removeprefix("local-dir:"))
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ArtalignError(
                f"{path} has no {CONFIG_FILE}; pass a folder written by `artalign base "
                "train-clip` (or any open_clip local-dir folder)"
            )
        if not any(path.glob("*.safetensors")):
            raise ArtalignError(f"{path} has no .safetensors weights; train or copy them there")
        if pretrained is not None:
            raise ArtalignError("pass either a model folder or a config name with pretrained")
        return f"local-dir:{path}", None
    register_model_configs()
    if text not in open_clip.list_models():
        if text.startswith("local-dir:") or "/" in text or text.startswith("."):
            raise ArtalignError(f"model folder {path} does not exist; train one or fix the path")
        raise ArtalignError(
            f"unknown model {text!r}: not a folder and not an open_clip config name (artalign's: "
            f"{', '.join(OWN_MODELS)}); hub ids are never downloaded"
        )
    if pretrained is None:
        raise ArtalignError(
            f"model {text!r} is a config name: pass pretrained=FILE, a local "
            f"{WEIGHTS_FILE} (no weights are ever downloaded)"
        )
    weights = Path(pretrained)
    if not weights.is_file():
        raise ArtalignError(
            f"pretrained weights {weights} do not exist; pass a local .safetensors file "
            "(pretrained tags are never downloaded)"
        )
    if weights.suffix != ".safetensors":
        raise ArtalignError(
            f"{weights} is not a .safetensors file; artalign never unpickles weights"
        )
    return text, str(weights)


def load_clip(
    model: str | Path, pretrained: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Callable[[Image.Image], torch.Tensor], Any]:
    """Load a CLIP for inference: (model in eval mode, image preprocess, tokenizer).

    `model` is a folder (ours, or any open_clip `local-dir` folder) or an open_clip config name
    with `pretrained` a local .safetensors file.
    """
    name, weights = resolve_model(model, pretrained)
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=weights, device=device
        )
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, ValueError, OSError, KeyError, json.JSONDecodeError) as e:
        raise ArtalignError(f"cannot load CLIP {model} ({type(e).__name__}: {e})") from e
    net.eval()
    return net, preprocess, tokenizer


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_images(
    model: torch.nn.Module,
    images: torch.Tensor | Sequence[Image.Image],
    preprocess: Callable[[Image.Image], torch.Tensor] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """L2-normalised image embeddings (N, D) in float32 on the CPU.

    `images` is a preprocessed float tensor (N, 3, H, W) or PIL images run through `preprocess`.
    """
    if not isinstance(images, torch.Tensor) and preprocess is None:
        raise ArtalignError("embed_images needs `preprocess` for PIL images")
    device = _device(model)
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if not isinstance(chunk, torch.Tensor):
            chunk = torch.stack([preprocess(im) for im in chunk])  # type: ignore[misc]
        feats = model.encode_image(chunk.to(device), normalize=True)
        out.append(feats.float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def embed_texts(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 512
) -> torch.Tensor:
    """L2-normalised text embeddings (N, D) in float32 on the CPU."""
    device = _device(model)
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size])).to(device)
        out.append(model.encode_text(tokens, normalize=True).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def model_notes(model: str | Path) -> dict[str, Any]:
    """The "artalign" notes of a model folder's open_clip_config.json ({} if none)."""
    path = Path(str(model).removeprefix("local-dir:")) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        notes = json.loads(path.read_text()).get("artalign", {})
    except (json.JSONDecodeError, AttributeError):
        return {}
    return notes if isinstance(notes, dict) else {}
