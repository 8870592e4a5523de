"""Feature extractors for the quality metrics (FID, KID, precision/recall, ...), by name.

Every extractor is an `nn.Module` mapping float images (B, 3, H, W) in [0, 1] to features
(B, D), with two attributes the rest of `evaluation` relies on:
- `num_features` (D), which torchmetrics reads instead of probing the network;
- `fingerprint`, the SHA-256 of its weights and its preprocessing, which keys the feature cache:
  two extractors with the same fingerprint give the same features for the same images.

Registered extractors (`EvalContext.extractor` names one; `clip` is the default):
- `clip`: the image tower of the context's CLIP folder (`--clip DIR`), the model trained on the
  embedded world, so its features know what these images are about;
- `open_clip`: any local open_clip model, a folder (`model=DIR`) or a config name with local
  safetensors weights (`model=NAME, pretrained=FILE`);
- `inception`: torchmetrics' InceptionV3 (the network FID was defined with), from a local
  safetensors file (`weights=FILE`). Nothing is ever downloaded and nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from base_models.errors import ArtalignError
from evaluation.registry import register_extractor

INCEPTION_FEATURES = (64, 192, 768, 2048)
_CONVERT_HINT = (
    'convert it once with: python -c "import torch, safetensors.torch as st; '
    "st.save_file(torch.load('IN.pth', weights_only=True), 'OUT.safetensors')\""
)


def module_fingerprint(module: nn.Module, preprocessing: dict[str, Any]) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes, values) and its preprocessing.

    Hashing the tensors rather than a file makes the key independent of how the weights were
    stored, and any change of weights, resize or normalisation changes it.
    """
    h = hashlib.sha256()
    h.update(type(module).__name__.encode())
    h.update(json.dumps(preprocessing, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int) -> Iterator[Any]:
    if isinstance(images, torch.Tensor):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
    else:
        yield from images


@torch.no_grad()
def extract(
    extractor: nn.Module,
    images: torch.Tensor | Iterable[torch.Tensor],
    batch_size: int = 256,
) -> torch.Tensor:
    """Features (N, D) as float64 on the CPU of images (N, 3, H, W) in [0, 1].

    `images` may also be an iterable of such batches, so that a large image set is decoded and
    embedded batch by batch and only its features are ever held in memory.
    """
    if batch_size < 1:
        raise ArtalignError(f"batch_size must be at least 1; got {batch_size}")
    device = _device_of(extractor)
    out = []
    for batch in _batches(images, batch_size):
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ArtalignError(
                f"feature extractors take images (B, 3, H, W); got shape {tuple(batch.shape)}"
            )
        feats = extractor(batch.to(device, torch.float32))
        out.append(feats.reshape(len(batch), -1).to("cpu", torch.float64))
    if not out:
        return torch.empty(0, int(getattr(extractor, "num_features", 0)), dtype=torch.float64)
    return torch.cat(out)


# ----------------------------------------------------------------------------- CLIP towers


def clip_features(model: str | Path, pretrained: str | Path | None = None) -> nn.Module:
    """The image tower of an open_clip model (folder, or config name + local weights)."""
    # lazy: open_clip
    from base_models.clip.features import ClipImageFeatures
    from base_models.clip.model_io import load_clip

    net, _, _ = load_clip(model, pretrained)
    pp = net.visual.preprocess_cfg  # open_clip keeps size / mean / std on the tower
    size = int(pp["size"] if isinstance(pp["size"], int) else pp["size"][0])
    mean, std = [float(v) for v in pp["mean"]], [float(v) for v in pp["std"]]
    extractor = ClipImageFeatures(net, size, mean, std)
    # only the image tower and the preprocessing (antialiased bicubic resize, then mean / std)
    # decide the features: a new text tower keeps the cached image features valid
    prep = {"kind": "clip", "size": size, "resize": "bicubic-antialias", "mean": mean, "std": std}
    extractor.fingerprint = module_fingerprint(net.visual, prep)
    return extractor.eval()


@register_extractor("clip")
def clip_extractor(ctx: Any, path: str | Path | None = None) -> nn.Module:
    """The context's CLIP image tower (`--clip DIR`), or the CLIP folder `path`."""
    path = path or ctx.clip_path
    if path is None:
        raise ArtalignError(
            "the `clip` feature extractor needs a CLIP model; pass --clip DIR "
            "(or choose another extractor: open_clip, inception)"
        )
    return clip_features(path).to(ctx.device)


@register_extractor("open_clip")
def open_clip_extractor(
    ctx: Any, model: str | Path | None = None, pretrained: str | Path | None = None
) -> nn.Module:
    """Any local open_clip model: `model=DIR`, or `model=CONFIG_NAME, pretrained=FILE`."""
    if model is None:
        raise ArtalignError(
            "the `open_clip` feature extractor needs model=DIR (an open_clip folder) or "
            "model=CONFIG_NAME with pretrained=FILE.safetensors"
        )
    return clip_features(model, pretrained).to(ctx.device)


# ----------------------------------------------------------------------------- Inception


class InceptionFeatures(nn.Module):
    """torchmetrics' InceptionV3 (FID's network) on float images in [0, 1].

    Images become uint8 exactly as torchmetrics' `FrechetInceptionDistance(normalize=True)`
    makes them (`(x * 255).byte()`), so our FID equals torchmetrics' on the same images.
    """

    def __init__(self, net: nn.Module, feature: int, antialias: bool) -> None:
        super().__init__()
        self.net = net
        self.num_features = feature
        self.fingerprint = module_fingerprint(
            net, {"kind": "inception", "feature": feature, "antialias": antialias, "uint8": "trunc"}
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images if images.dtype == torch.uint8 else (images.clamp(0, 1) * 255).byte()
        return self.net(x).float()


class _TorchWithSafetensorsLoad:
    """Stands in for `torch` inside torch-fidelity while it builds InceptionV3.

    torch-fidelity's own weight loader unpickles its .pth file (torch's loader with the
    weights-only guard switched off); artalign reads weights only from safetensors, so `load`
    here reads a safetensors file (nothing is unpickled) and everything else is torch itself.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(path: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(path))


def inception_features(
    weights: str | Path | None, feature: int = 2048, antialias: bool = True
) -> InceptionFeatures:
    """torchmetrics' `NoTrainInceptionV3` with weights from a local safetensors file.

    `weights` holds torch-fidelity's InceptionV3 state dict (the FID network converted from
    TensorFlow, `weights-inception-2015-12-05-6726825d.pth`) saved as safetensors. `antialias`
    is torchmetrics' default resize (True); False is the TF1 bilinear resize of the original FID.
    """
    if weights is None:
        raise ArtalignError(
            "the `inception` feature extractor needs local weights: pass weights=FILE.safetensors "
            "(torch-fidelity's InceptionV3 state dict); artalign never downloads them"
        )
    path = Path(weights)
    if not path.is_file():
        raise ArtalignError(f"Inception weights {path} do not exist; pass a local file")
    if path.suffix != ".safetensors":
        raise ArtalignError(
            f"{path} is not a .safetensors file and artalign never unpickles weights; "
            + _CONVERT_HINT
        )
    if feature not in INCEPTION_FEATURES:
        raise ArtalignError(f"Inception feature must be one of {INCEPTION_FEATURES}; got {feature}")
    try:
        from torch_fidelity import feature_extractor_inceptionv3 as fidelity_module
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as e:
        raise ArtalignError(
            "the `inception` feature extractor needs torch-fidelity (torchmetrics' InceptionV3): "
            "pip install torch-fidelity"
        ) from e
    real_torch = fidelity_module.torch
    fidelity_module.torch = _TorchWithSafetensorsLoad()  # type: ignore[assignment]
    try:
        net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(feature)],
            feature_extractor_weights_path=str(path),
            antialias=antialias,
        )
    except (RuntimeError, OSError, KeyError) as e:
        msg = " ".join(str(e).split())[:300]
        raise ArtalignError(
            f"cannot load Inception weights {path} ({type(e).__name__}: {msg}); pass "
            "torch-fidelity's InceptionV3 state dict saved as safetensors"
        ) from e
    finally:
        fidelity_module.torch = real_torch
    return InceptionFeatures(net, feature, antialias)


@register_extractor("inception")
def inception_extractor(
    ctx: Any, weights: str | Path | None = None, feature: int = 2048, antialias: bool = True
) -> nn.Module:
    """torchmetrics' InceptionV3 from `weights=FILE.safetensors` (a clear error without it)."""
    return inception_features(weights, feature, antialias).to(ctx.device)
