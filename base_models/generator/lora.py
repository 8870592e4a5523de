"""LoRA adapters on the UNet's attention projections, in the format diffusers loads.

Adapters are peft LoRA layers on `to_q`, `to_k`, `to_v`, `to_out.0` of every attention block.
They are saved as diffusers' training scripts save them (peft state dict -> diffusers key
names -> `StableDiffusionPipeline.save_lora_weights`, with the LoraConfig as metadata), so
`pipe.load_lora_weights(dir)` in plain diffusers gives the same model. Turning the adapters
off gives the base model back: that is the reference model of Diffusion-DPO.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.io_utils import replace_dir

ADAPTER = "default"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default weight name
_LORA_KEY = re.compile(r"^(.+?)\.(lora_A|lora_B|lora\.down|lora\.up)(\.[\w-]+)?\.weight$")


def lora_config(rank: int = 4, alpha: float | None = None, dropout: float = 0.0) -> Any:
    """A peft LoraConfig on the UNet's attention projections; alpha defaults to the rank."""
    from peft import LoraConfig

    if rank < 1:
        raise ArtalignError(f"LoRA rank must be >= 1, got {rank}")
    return LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        lora_dropout=dropout,
        init_lora_weights="gaussian",
        target_modules=list(LORA_TARGETS),
    )


def has_lora(unet: torch.nn.Module) -> bool:
    return bool(getattr(unet, "peft_config", None))


def add_lora(unet: torch.nn.Module, config: Any) -> None:
    """Add a fresh, trainable adapter (its up-projection starts at zero: no change yet)."""
    if has_lora(unet):
        raise ArtalignError("a LoRA is already attached; detach it before attaching another")
    unet.add_adapter(config, adapter_name=ADAPTER)


def _check_fits(unet: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Every LoRA key must name a layer of this UNet with matching in/out sizes."""
    unet_keys = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    others = sorted({k.split(".")[0] for k in state if not k.startswith("unet.")})
    if others:
        raise ArtalignError(
            f"LoRA {path} also adapts {', '.join(others)}; only UNet LoRAs load here"
        )
    if not unet_keys:
        raise ArtalignError(f"LoRA {path} holds no UNet weights; pass a UNet LoRA folder")
    problems = []
    for key, w in unet_keys.items():
        m = _LORA_KEY.match(key)
        if m is None:
            problems.append(f"{key} (not a LoRA weight)")
            continue
        name, kind = m.group(1), m.group(2)
        try:
            layer = unet.get_submodule(name)
        except AttributeError:
            problems.append(f"{name} (no such layer)")
            continue
        layer = getattr(layer, "base_layer", layer)
        if not isinstance(layer, torch.nn.Linear):
            problems.append(f"{name} (not a linear layer)")
        elif kind in ("lora_A", "lora.down") and w.shape[-1] != layer.in_features:
            problems.append(f"{name} (input size {w.shape[-1]} vs {layer.in_features})")
        elif kind in ("lora_B", "lora.up") and w.shape[0] != layer.out_features:
            problems.append(f"{name} (output size {w.shape[0]} vs {layer.out_features})")
    if problems:
        raise ArtalignError(
            f"LoRA {path} was trained for another model: {len(problems)} weights do not fit this "
            f"UNet, e.g. {problems[0]}; use a LoRA trained on this base model"
        )


def load_lora(unet: torch.nn.Module, path: str | Path) -> None:
    """Attach the adapters saved in `path` (a folder from `save_lora` or diffusers' scripts)."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    if not path.is_dir():
        raise ArtalignError(
            f"LoRA folder {path} does not exist; pass a folder written by save_lora"
        )
    if not (path / LORA_FILE).is_file():
        raise ArtalignError(f"{path} has no {LORA_FILE}; pass a diffusers LoRA folder")
    if has_lora(unet):
        raise ArtalignError("a LoRA is already attached; detach it before attaching another")
    try:
        state, alphas, metadata = StableDiffusionPipeline.lora_state_dict(
            str(path),
            weight_name=LORA_FILE,
            use_safetensors=True,
            local_files_only=True,
            return_lora_metadata=True,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ArtalignError(f"cannot read LoRA {path} ({type(e).__name__}: {e})") from e
    _check_fits(unet, state, path)
    try:
        StableDiffusionPipeline.load_lora_into_unet(
            state, alphas, unet, adapter_name=ADAPTER, metadata=metadata
        )
    except (ValueError, RuntimeError, KeyError) as e:
        remove_lora(unet)
        raise ArtalignError(f"LoRA {path} does not fit this UNet ({e})") from e


def save_lora(unet: torch.nn.Module, out: str | Path) -> Path:
    """Write the attached adapters to `out/pytorch_lora_weights.safetensors`, atomically."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    if not has_lora(unet):
        raise ArtalignError("no LoRA is attached; attach_lora first")
    out = Path(out)
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    layers = convert_state_dict_to_diffusers(state)
    layers = {k: v.detach().to("cpu").contiguous() for k, v in layers.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        StableDiffusionPipeline.save_lora_weights(
            tmp,
            unet_lora_layers=layers,
            safe_serialization=True,
            weight_name=LORA_FILE,
            unet_lora_adapter_metadata=unet.peft_config[ADAPTER].to_dict(),
        )
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def remove_lora(unet: torch.nn.Module) -> None:
    """Remove every adapter: the UNet is the base model again."""
    if has_lora(unet):
        unet.delete_adapters(list(unet.peft_config))


@contextmanager
def lora_disabled(unet: torch.nn.Module) -> Iterator[None]:
    """Run the base model (adapters off) inside the block, e.g. the DPO reference model."""
    if not has_lora(unet):
        yield
        return
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()
