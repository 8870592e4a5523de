"""The reward model's backbones: a CLIP with one interface, from three kinds of local folders.

- `artalign`: a folder written by `artalign base train-clip` (open_clip's local-dir format).
- `open_clip`: any open_clip `local-dir` folder, or a config name with `pretrained` a local
  .safetensors file (both through `base_models.clip.model_io.load_clip`).
- `transformers`: a local `CLIPModel` folder (`save_pretrained` layout, with its tokenizer and
  preprocessor config), loaded with `local_files_only=True`.

Every backbone turns PIL images or float tensors in [0, 1] into the tensor its image tower
expects (PIL through the backbone's own transform; tensors resized and normalised alike),
tokenizes prompts to a dict of equal-length tensors, and embeds both (unnormalised). Nothing
here downloads: a hub id fails with a message that says to pass a local folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from base_models.errors import ArtalignError

BACKBONE_KINDS = ("artalign", "open_clip", "transformers")
# LoRA targets: the linear layers of each kind's towers (attention projections and MLPs).
# open_clip's nn.MultiheadAttention calls its out_proj weight directly, so it is not a target.
LORA_TARGETS = {
    "open_clip": ("c_fc", "c_proj", "q_proj", "k_proj", "v_proj"),
    "transformers": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
}
_HASH_LIMIT = 2 * 1024**3  # hash weights files up to 2 GiB; bigger ones are fingerprinted by size
Tokens = dict[str, torch.Tensor]


def detect_kind(path: str | Path) -> str | None:
    """'artalign' / 'transformers' for a folder that looks like one, else None."""
    path = Path(str(path).removeprefix("local-dir:"))
    if (path / "open_clip_config.json").is_file():
        return "artalign"
    config = path / "config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if isinstance(data, dict) and data.get("model_type") == "clip":
            return "transformers"
    return None


def fingerprint(files: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 (files under 2 GiB) of the backbone's weights, to detect a swap."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(files):
        entry: dict[str, Any] = {"size": f.stat().st_size}
        if entry["size"] <= _HASH_LIMIT:
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            entry["sha256"] = h.hexdigest()
        out[f.name] = entry
    return out


def resize_normalize(
    images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] (or uint8) -> the tower's input: shortest side resized to
    `size` (bicubic, antialiased), centre-cropped, normalised. As open_clip's and CLIP's own
    preprocessing do for PIL images."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ArtalignError(f"image tensors must be (N, 3, H, W), got {tuple(images.shape)}")
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True).clamp(0, 1)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top : top + size, left : left + size]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class Backbone(nn.Module):
    """A CLIP: `preprocess` images, `tokenize` prompts, `encode_image` / `encode_text`."""

    kind: str
    source: dict[str, Any]  # how to load it again: kind, path, pretrained, fingerprint
    embed_dim: int
    image_size: int
    mean: list[float]
    std: list[float]
    lora_targets: tuple[str, ...]
    init_logit_scale: float  # the CLIP's own exp(logit_scale), where the pickscore head starts

    def preprocess(self, images: torch.Tensor | Sequence[Image.Image]) -> torch.Tensor:
        """PIL images or (N, 3, H, W) tensors in [0, 1] -> normalised (N, 3, S, S).

        Tensors stay on their device (a trainer's GPU images are not copied to the CPU); PIL
        images come out on the CPU.
        """
        if isinstance(images, torch.Tensor):
            return resize_normalize(images, self.image_size, self.mean, self.std)
        return self._preprocess_pil([im.convert("RGB") for im in images])

    def _preprocess_pil(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError

    def tokenize(self, prompts: Sequence[str]) -> Tokens:
        raise NotImplementedError

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_text(self, tokens: Tokens) -> torch.Tensor:
        raise NotImplementedError


class OpenClipBackbone(Backbone):
    """An open_clip CLIP (ours or any local open_clip checkpoint)."""

    def __init__(self, model: nn.Module, transform: Any, tokenizer: Any, source: dict) -> None:
        super().__init__()
        self.model, self._transform, self._tokenizer = model, transform, tokenizer
        self.kind, self.source = source["kind"], source
        self.embed_dim = int(model.visual.output_dim)
        pp = getattr(model.visual, "preprocess_cfg", None) or {}
        size = pp.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.mean = list(pp.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = list(pp.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.lora_targets = LORA_TARGETS["open_clip"]
        scale = getattr(model, "logit_scale", None)
        self.init_logit_scale = float(scale.detach().exp()) if scale is not None else 100.0

    def _preprocess_pil(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self._transform(im) for im in images])

    def tokenize(self, prompts: Sequence[str]) -> Tokens:
        return {"input_ids": self._tokenizer(list(prompts))}

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def encode_text(self, tokens: Tokens) -> torch.Tensor:
        return self.model.encode_text(tokens["input_ids"])


class TransformersBackbone(Backbone):
    """A transformers `CLIPModel` with its tokenizer and image processor."""

    def __init__(self, model: nn.Module, tokenizer: Any, processor: Any, source: dict) -> None:
        super().__init__()
        self.model, self._tokenizer, self._processor = model, tokenizer, processor
        self.kind, self.source = "transformers", source
        self.embed_dim = int(model.config.projection_dim)
        self.image_size = int(model.config.vision_config.image_size)
        self.mean = list(
            getattr(processor, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        )
        self.std = list(
            getattr(processor, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        )
        self.lora_targets = LORA_TARGETS["transformers"]
        self.init_logit_scale = float(model.logit_scale.detach().exp())
        self._max_length = int(model.config.text_config.max_position_embeddings)

    def _preprocess_pil(self, images: list[Image.Image]) -> torch.Tensor:
        if self._processor is None:  # no preprocessor_config.json: CLIP's standard recipe
            import numpy as np

            arrays = [torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()) for im in images]
            return torch.cat([self.preprocess(a.permute(2, 0, 1)[None]) for a in arrays])
        return self._processor(images=images, return_tensors="pt")["pixel_values"]

    def tokenize(self, prompts: Sequence[str]) -> Tokens:
        out = self._tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=self._max_length,
            return_tensors="pt",
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return self.model.visual_projection(pooled)

    def encode_text(self, tokens: Tokens) -> torch.Tensor:
        out = self.model.text_model(
            input_ids=tokens["input_ids"], attention_mask=tokens.get("attention_mask")
        )
        return self.model.text_projection(out.pooler_output)


def _check_local(path: str, kind: str) -> Path:
    if path.startswith(("hf-hub:", "hf://", "http://", "https://")):
        raise ArtalignError(
            f"backbone {path!r} is a hub id; artalign never downloads weights. Download it "
            "yourself and pass its local folder"
        )
    folder = Path(path.removeprefix("local-dir:"))
    if not folder.is_dir():
        raise ArtalignError(
            f"backbone folder {folder} does not exist; pass a local {kind} CLIP folder "
            "(e.g. runs/demo/clip from `artalign base train-clip`)"
        )
    return folder


def _wrong_kind(folder: Path, kind: str) -> None:
    found = detect_kind(folder)
    if found == "transformers" and kind != "transformers":
        raise ArtalignError(
            f"{folder} is a transformers CLIP folder; pass --backbone-kind transformers"
        )
    if found == "artalign" and kind == "transformers":
        raise ArtalignError(
            f"{folder} is an open_clip folder (open_clip_config.json); pass --backbone-kind "
            "artalign (or open_clip)"
        )


def _load_open_clip(path: str, kind: str, pretrained: str | None, device: str) -> Backbone:
    # lazy: open_clip
    from base_models.clip.model_io import load_clip

    folder = Path(path.removeprefix("local-dir:"))
    if kind == "artalign" or folder.is_dir() or pretrained is None:
        folder = _check_local(path, kind)
        _wrong_kind(folder, kind)
        files = sorted(folder.glob("*.safetensors"))
    else:
        files = [Path(pretrained)] if Path(pretrained).is_file() else []
    model, transform, tokenizer = load_clip(path, pretrained, device=device)
    source = {
        "kind": kind,
        "path": path,
        "pretrained": pretrained,
        "fingerprint": fingerprint(files),
    }
    return OpenClipBackbone(model, transform, tokenizer, source)


def _load_transformers(path: str, device: str) -> Backbone:
    folder = _check_local(path, "transformers")
    _wrong_kind(folder, "transformers")
    if detect_kind(folder) != "transformers":
        raise ArtalignError(f"{folder} has no config.json of a transformers CLIPModel")
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    try:
        model = CLIPModel.from_pretrained(str(folder), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ArtalignError(f"cannot load transformers CLIP {folder}: {e}") from None
    processor = None
    if (folder / "preprocessor_config.json").is_file():
        processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model.to(device).eval()
    files = sorted(folder.glob("*.safetensors"))
    source = {
        "kind": "transformers",
        "path": path,
        "pretrained": None,
        "fingerprint": fingerprint(files),
    }
    return TransformersBackbone(model, tokenizer, processor, source)


def load_backbone(
    path: str | Path,
    kind: str = "artalign",
    pretrained: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Backbone:
    """Load a backbone of `kind` (see the module docstring) for inference, in eval mode."""
    if kind not in BACKBONE_KINDS:
        raise ArtalignError(
            f"unknown backbone kind {kind!r}; choose one of {', '.join(BACKBONE_KINDS)}"
        )
    text = str(path)
    pre = None if pretrained is None else str(pretrained)
    if kind == "transformers":
        if pre is not None:
            raise ArtalignError(
                "--pretrained is for open_clip config names; a transformers backbone is a folder"
            )
        backbone = _load_transformers(text, str(device))
    else:
        backbone = _load_open_clip(text, kind, pre, str(device))
    return backbone.eval()


def check_fingerprint(backbone: Backbone, expected: dict[str, Any] | None) -> None:
    """ArtalignError when the backbone's weights are not those a reward model was trained on."""
    if not expected:
        return
    found = backbone.source.get("fingerprint", {})
    for name, entry in expected.items():
        got = found.get(name)
        same = got is not None and got.get("size") == entry.get("size")
        same = same and got.get("sha256") == entry.get("sha256")
        if not same:
            raise ArtalignError(
                f"backbone {backbone.source['path']}: weights {name} differ from those this "
                "reward model was trained on; pass the original backbone"
            )
