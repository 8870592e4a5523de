"""`RewardModel`: a CLIP backbone and a head that scores (image, prompt) pairs.

Heads (both read the backbone's image and text embeddings):
- `pickscore`: exp(logit_scale) x cosine of the image and text embeddings, as PickScore. Each
  embedding first passes a residual linear map x + Ax (A starts at zero), so the untrained head
  is the backbone's zero-shot CLIP score, a frozen backbone still has something to learn, and
  weight decay pulls back towards the zero-shot score.
- `mlp`: an MLP on the joint features [img, txt, img * txt] of the normalised embeddings, as
  ImageReward's head.
- `hybrid` (an addition): the zero-shot CLIP score plus an `mlp` correction that starts at
  zero, for a frozen backbone: it keeps what CLIP knows (prompt fidelity) and learns what the
  prompt does not say (a taste).
Modes: `frozen` (only the head trains; features may be cached), `lora` (peft LoRA adapters on
the backbone's linear layers, see backbones.LORA_TARGETS, plus the head) and `full`. The
backbone always runs in eval mode (frozen batch-norm statistics, no dropout), even when its
weights train.

Saved folder: `reward.safetensors` holds every trained weight (the head; with LoRA the unmerged
adapter weights; in full mode the whole backbone) and `reward_config.json` how to rebuild the
rest (backbone kind, path and weight fingerprint, head, mode, LoRA settings, training config,
data provenance). `load_reward_model` needs only those two files and the backbone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, write_json
from rlhf.reward.backbones import Backbone, Tokens, check_fingerprint, load_backbone

HEADS = ("pickscore", "mlp", "hybrid")
MODES = ("frozen", "lora", "full")
FORMAT = "artalign-reward"
CONFIG_FILE = "reward_config.json"
WEIGHTS_FILE = "reward.safetensors"
HOLDS = {"frozen": "head", "lora": "head + LoRA adapter (unmerged)", "full": "head + backbone"}


class PickScoreHead(nn.Module):
    """s = exp(logit_scale) * cos(img + A img, txt + B txt); A and B start at zero.

    Written as a residual so that weight decay pulls the head back to the backbone's zero-shot
    CLIP score rather than to nothing.
    """

    def __init__(self, dim: int, init_scale: float = 100.0) -> None:
        super().__init__()
        self.image_proj = nn.Linear(dim, dim)
        self.text_proj = nn.Linear(dim, dim)
        for layer in (self.image_proj, self.text_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(min(max(init_scale, 1.0), 100.0))))

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        i = F.normalize(img + self.image_proj(img), dim=-1)  # (N, D)
        t = F.normalize(txt + self.text_proj(txt), dim=-1)  # (N, D)
        return self.logit_scale.clamp(max=math.log(100.0)).exp() * (i * t).sum(-1)  # (N,)


class MLPHead(nn.Module):
    """s = MLP([img, txt, img * txt]) on L2-normalised embeddings."""

    def __init__(self, dim: int, hidden: Sequence[int] = (256, 64), dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3 * dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        i, t = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        return self.net(torch.cat([i, t, i * t], dim=-1)).squeeze(-1)  # (N,)


def _index_tokens(tokens: Tokens, idx: torch.Tensor | slice) -> Tokens:
    return {k: v[idx] for k, v in tokens.items()}


class HybridHead(nn.Module):
    """s = exp(logit_scale) * cos(img, txt) + MLP([img, txt, img * txt]), the MLP's last layer
    starting at zero: the zero-shot CLIP score plus a learned correction (e.g. a taste the
    prompt does not name), so it starts where CLIP is good and cannot forget it quickly."""

    def __init__(self, dim: int, init_scale: float, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.mlp = MLPHead(dim, hidden, dropout)
        nn.init.zeros_(self.mlp.net[-1].weight)
        nn.init.zeros_(self.mlp.net[-1].bias)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(min(max(init_scale, 1.0), 100.0))))

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        cos = (F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1)  # (N,)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        return scale * cos + self.mlp(img, txt)


class RewardModel(nn.Module):
    """A backbone + head; `score(images, prompts)` is what users and trainers call."""

    def __init__(
        self,
        backbone: Backbone,
        head: str = "pickscore",
        mode: str = "frozen",
        mlp_hidden: Sequence[int] = (256, 64),
        dropout: float = 0.1,
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ArtalignError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if mode not in MODES:
            raise ArtalignError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.backbone, self.head_kind, self.mode = backbone, head, mode
        dim = backbone.embed_dim
        self.head: nn.Module = {
            "pickscore": lambda: PickScoreHead(dim, backbone.init_logit_scale),
            "mlp": lambda: MLPHead(dim, mlp_hidden, dropout),
            "hybrid": lambda: HybridHead(dim, backbone.init_logit_scale, mlp_hidden, dropout),
        }[head]()
        self.head_config = {"kind": head, "mlp_hidden": list(mlp_hidden), "dropout": dropout}
        self.lora_config: dict[str, Any] | None = None
        if mode == "lora":
            self._add_lora(lora or {})
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(mode == "full" or (mode == "lora" and "lora_" in name))
        self.meta: dict[str, Any] = {}  # training config and data provenance, saved as is

    def _add_lora(self, lora: dict[str, Any]) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        names = {
            n.rsplit(".", 1)[-1]
            for n, m in self.backbone.model.named_modules()
            if isinstance(m, nn.Linear)
        }
        targets = sorted(t for t in self.backbone.lora_targets if t in names)
        if not targets:
            raise ArtalignError(
                f"backbone {self.backbone.source['path']} has none of the LoRA target layers "
                f"{self.backbone.lora_targets}; use --mode full"
            )
        self.lora_config = {
            "r": int(lora.get("r", 8)),
            "alpha": float(lora.get("alpha", 16.0)),
            "dropout": float(lora.get("dropout", 0.0)),
            "target_modules": targets,
            "saved": "adapter (unmerged LoRA A/B weights)",
        }
        cfg = LoraConfig(
            r=self.lora_config["r"],
            lora_alpha=self.lora_config["alpha"],
            lora_dropout=self.lora_config["dropout"],
            target_modules=targets,
        )
        inject_adapter_in_model(cfg, self.backbone.model)

    def train(self, mode: bool = True) -> RewardModel:
        """Train the head; the backbone stays in eval mode (see the module docstring)."""
        super().train(mode)
        self.backbone.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    # ------------------------------------------------------------------ forward pieces
    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels (N, 3, S, S) -> image embeddings (N, D) (unnormalised)."""
        return self.backbone.encode_image(pixels.to(self.device)).float()

    def embed_texts(self, tokens: Tokens) -> torch.Tensor:
        """Tokens from `backbone.tokenize` -> text embeddings (N, D) (unnormalised)."""
        return self.backbone.encode_text({k: v.to(self.device) for k, v in tokens.items()}).float()

    def head_scores(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """Scores (N,) from image and text embeddings (N, D): the only part that sees both."""
        return self.head(img.float(), txt.float())

    def forward(self, pixels: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        return self.head_scores(self.embed_images(pixels), self.embed_texts(tokens))

    @torch.no_grad()
    def score(
        self,
        images: torch.Tensor | Sequence[Image.Image],
        prompts: str | Sequence[str],
        batch_size: int = 64,
    ) -> torch.Tensor:
        """Rewards (N,) float32 on the CPU for N images and N prompts (or one for all).

        images: PIL images or a float tensor (N, 3, H, W) in [0, 1] (uint8 is accepted too).
        Batched, without gradients; each distinct prompt is embedded once.
        """
        n = len(images)
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        if len(prompts) != n:
            raise ArtalignError(f"score got {n} images but {len(prompts)} prompts")
        if batch_size < 1:
            raise ArtalignError(f"batch_size must be >= 1, got {batch_size}")
        if n == 0:
            return torch.zeros(0)
        was_training = self.training
        self.eval()
        try:
            unique = list(dict.fromkeys(prompts))
            where = {p: i for i, p in enumerate(unique)}
            tokens = self.backbone.tokenize(unique)
            txt = torch.cat(
                [
                    self.embed_texts(_index_tokens(tokens, slice(s, s + batch_size)))
                    for s in range(0, len(unique), batch_size)
                ]
            )
            prompt_idx = torch.tensor([where[p] for p in prompts])
            out = []
            for s in range(0, n, batch_size):
                pixels = self.backbone.preprocess(images[s : s + batch_size])
                img = self.embed_images(pixels)
                out.append(self.head_scores(img, txt[prompt_idx[s : s + batch_size]]).cpu())
            return torch.cat(out).float()
        finally:
            self.train(was_training)

    def score_with_grad(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Rewards (N,) of float images (N, 3, H, W) in [0, 1], differentiable with respect to
        the images: reward backpropagation (DRaFT, AlignProp) flows through this. One batch; the
        prompts are embedded without gradients. Call `requires_grad_(False)` first so that only
        the images, not the reward model, receive gradients."""
        if len(images) != len(prompts):
            raise ArtalignError(f"score got {len(images)} images but {len(prompts)} prompts")
        unique = list(dict.fromkeys(prompts))
        with torch.no_grad():
            txt = self.embed_texts(self.backbone.tokenize(unique))
        idx = torch.tensor([unique.index(p) for p in prompts], device=txt.device)
        pixels = self.backbone.preprocess(images.to(self.device))
        return self.head_scores(self.embed_images(pixels), txt[idx])

    # ------------------------------------------------------------------ saving
    def trained_state(self) -> dict[str, torch.Tensor]:
        """The weights `save` writes: head, plus LoRA adapters or the whole backbone."""
        state = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.mode != "frozen":
            for k, v in self.backbone.model.state_dict().items():
                if self.mode == "full" or "lora_" in k:
                    state[f"backbone.{k}"] = v
        return state

    def config(self) -> dict[str, Any]:
        """The JSON config `save` writes beside the weights."""
        src = dict(self.backbone.source)
        local = Path(str(src["path"]).removeprefix("local-dir:"))
        if local.exists():  # absolute, so the model loads from any working directory
            src["path"] = str(local.resolve())
        if src.get("pretrained") and Path(src["pretrained"]).exists():
            src["pretrained"] = str(Path(src["pretrained"]).resolve())
        return {
            "format": FORMAT,
            "version": 1,
            "backbone": {
                **src,
                "embed_dim": self.backbone.embed_dim,
                "image_size": self.backbone.image_size,
            },
            "head": self.head_config,
            "mode": self.mode,
            "lora": self.lora_config,
            "weights": {"file": WEIGHTS_FILE, "holds": HOLDS[self.mode]},
            **self.meta,
        }

    def save(self, out: str | Path) -> Path:
        """Write `reward.safetensors` and `reward_config.json` into `out` (each atomically)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.trained_state().items()}
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp), metadata={"format": FORMAT})
        config = self.config()
        backbone_path = Path(str(config["backbone"]["path"]).removeprefix("local-dir:"))
        if backbone_path.exists():
            config["backbone"]["path_relative"] = os.path.relpath(
                backbone_path.resolve(), out.resolve()
            )
        write_json(out / CONFIG_FILE, config)
        return out


def build_reward_model(
    backbone: str | Path,
    backbone_kind: str = "artalign",
    pretrained: str | Path | None = None,
    head: str = "pickscore",
    mode: str = "frozen",
    mlp_hidden: Sequence[int] = (256, 64),
    dropout: float = 0.1,
    lora: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> RewardModel:
    """A fresh reward model (untrained head) on a loaded backbone."""
    bb = load_backbone(backbone, backbone_kind, pretrained, device)
    return RewardModel(bb, head, mode, mlp_hidden, dropout, lora).to(device)


def read_reward_config(model_dir: str | Path) -> dict[str, Any]:
    """The reward_config.json of a reward-model folder, or an ArtalignError saying what it is."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ArtalignError(
            f"reward model folder {folder} does not exist; train one with `artalign reward train`"
        )
    path = folder / CONFIG_FILE
    if not path.is_file():
        hint = ""
        if (folder / "open_clip_config.json").is_file() or (folder / "config.json").is_file():
            hint = " (it looks like a backbone or another model, not a reward model)"
        raise ArtalignError(
            f"{folder} has no {CONFIG_FILE}{hint}; pass a folder written by `artalign reward train`"
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtalignError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtalignError(f"{path} is not an artalign reward-model config (format != {FORMAT!r})")
    return config


def _resolve_backbone(config: dict[str, Any], folder: Path, override: str | Path | None) -> str:
    if override is not None:
        return str(override)
    bb = config["backbone"]
    path = str(bb["path"])
    local = Path(path.removeprefix("local-dir:"))
    if local.exists() or (bb.get("pretrained") and not bb.get("path_relative")):
        return path
    rel = bb.get("path_relative")
    if rel and (folder / rel).exists():
        return str((folder / rel).resolve())
    raise ArtalignError(
        f"the backbone of {folder} ({path}) is missing; pass backbone=DIR "
        "(--backbone) pointing at the same CLIP"
    )


def _check_state(model: RewardModel, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.trained_state().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in expected if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    problems += [
        f"{k} has shape {got[k]}, the config builds {expected[k]}"
        for k in expected
        if k in got and got[k] != expected[k]
    ]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ArtalignError(
            f"{path} does not fit its {CONFIG_FILE} (another architecture?): "
            f"{'; '.join(problems[:3])}{more}"
        )


def load_reward_model(
    model_dir: str | Path, device: str | torch.device = "cpu", backbone: str | Path | None = None
) -> RewardModel:
    """Load a saved reward model for scoring (eval mode, no gradients needed).

    `backbone` overrides the recorded backbone path (e.g. after moving folders); its weights
    must still be the ones trained on (checked by fingerprint).
    """
    folder = Path(model_dir)
    config = read_reward_config(folder)
    try:
        bb, head = config["backbone"], config["head"]
        path = _resolve_backbone(config, folder, backbone)
        model = build_reward_model(
            path,
            bb["kind"],
            bb.get("pretrained"),
            head["kind"],
            config["mode"],
            head.get("mlp_hidden", (256, 64)),
            head.get("dropout", 0.1),
            config.get("lora"),
            device,
        )
    except (KeyError, TypeError) as e:
        raise ArtalignError(
            f"{folder / CONFIG_FILE} lacks a field ({e}); retrain the model"
        ) from None
    if config["mode"] != "full":
        check_fingerprint(model.backbone, bb.get("fingerprint"))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ArtalignError(f"{folder} has no {WEIGHTS_FILE}; the training run did not finish")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ArtalignError(f"{weights} is not a readable safetensors file ({e})") from None
    _check_state(model, state, weights)
    heads = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
    model.head.load_state_dict(heads)
    bstate = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if bstate:
        model.backbone.model.load_state_dict(bstate, strict=False)
    model.meta = {k: v for k, v in config.items() if k in ("training", "data", "metrics")}
    return model.to(device).eval()
