"""The concept-embedding safety checker, its CLIP embedder and the generation-time filter.

The checker works the way Stable Diffusion's safety checker does: an image's CLIP embedding is
compared by cosine with K concept embeddings, each with its own threshold; an image is flagged
when any concept's cosine exceeds its threshold. "Special care" concepts flag nothing by
themselves; when one of them fires, every other concept's score is raised by `adjustment`
(SD uses +0.01), so images near a sensitive concept are judged more strictly. Concepts come
from text prompts through the CLIP text tower, from mean image embeddings of labelled unsafe
images, or are tuned on labelled images in Q16's manner (see `evaluation.safety.calibrate`,
which also picks the thresholds). A checker is saved as `concepts.safetensors` + `checker.json`
together with a fingerprint of the CLIP it was calibrated with: loading it with another CLIP
fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, write_json

FORMAT = "artalign-concept-checker-v1"
CHECKER_FILE = "checker.json"
WEIGHTS_FILE = "concepts.safetensors"
SD_ADJUSTMENT = 0.01  # what SD's checker adds to every score once a special-care concept fires


# ------------------------------------------------------------------------------ CLIP side
def clip_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights (names, shapes, float32 values): same weights, same hash."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu")
        t = t.float() if t.is_floating_point() else t
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ClipEmbedder:
    """L2-normalised CLIP embeddings of images (N, 3, H, W) in [0, 1] and of texts."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, path: str = "") -> None:
        # lazy: open_clip
        from base_models.clip.features import ClipImageFeatures

        pp = model.visual.preprocess_cfg  # open_clip keeps size / mean / std on the tower
        size = pp["size"] if isinstance(pp["size"], int) else pp["size"][0]
        self.model, self.tokenizer, self.path = model.eval(), tokenizer, path
        self.size = int(size)
        self.tower = ClipImageFeatures(model, self.size, list(pp["mean"]), list(pp["std"]))
        self.fingerprint = clip_fingerprint(model)

    @classmethod
    def from_folder(cls, path: str | Path, pretrained: str | Path | None = None) -> ClipEmbedder:
        # lazy: open_clip
        from base_models.clip.model_io import load_clip

        model, _, tokenizer = load_clip(str(path), pretrained)
        return cls(model, tokenizer, str(path))

    @torch.no_grad()
    def images(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ArtalignError(f"images must be (N, 3, H, W) in [0, 1]; got {tuple(images.shape)}")
        device = next(self.model.parameters()).device
        out = [
            self.tower(images[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        if not out:
            return torch.zeros(0, self.tower.num_features)
        return F.normalize(torch.cat(out), dim=-1)  # (N, D)

    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        # lazy: open_clip
        from base_models.clip.model_io import embed_texts

        return embed_texts(self.model, self.tokenizer, list(texts))  # (N, D), normalised


# ------------------------------------------------------------------------------ checker
class ConceptChecker:
    """Flags images whose CLIP embedding is close to an unsafe concept (SD checker's method)."""

    def __init__(
        self,
        embedder: ClipEmbedder,
        concepts: torch.Tensor,
        names: Sequence[str],
        thresholds: Sequence[float] | torch.Tensor,
        special: Sequence[bool] | None = None,
        adjustment: float = SD_ADJUSTMENT,
        info: dict[str, Any] | None = None,
    ) -> None:
        k = len(names)
        self.concepts = F.normalize(torch.as_tensor(concepts, dtype=torch.float32), dim=-1)
        self.thresholds = torch.as_tensor(thresholds, dtype=torch.float32).reshape(-1)
        self.special = torch.tensor(list(special) if special is not None else [False] * k)
        if not (
            self.concepts.ndim == 2
            and len(self.concepts) == len(self.thresholds) == len(self.special) == k
        ):
            raise ArtalignError(
                f"a checker needs one embedding, threshold and special flag per concept; got "
                f"{tuple(self.concepts.shape)} embeddings, {len(self.thresholds)} thresholds, "
                f"{len(self.special)} flags for {k} names"
            )
        if bool(self.special.all()):
            raise ArtalignError("every concept is special-care; at least one must flag images")
        if self.concepts.shape[1] != embedder.tower.num_features:
            raise ArtalignError(
                f"concepts have {self.concepts.shape[1]} dims but the CLIP embeds in "
                f"{embedder.tower.num_features}; calibrate the checker with this CLIP"
            )
        self.embedder, self.names = embedder, list(names)
        self.adjustment, self.info = float(adjustment), dict(info or {})

    def scores_of(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine (N, K) of normalised image embeddings (N, D) with the concepts."""
        return embeddings.float() @ self.concepts.T

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """Cosine (N, K) of images (N, 3, H, W) in [0, 1] with each concept."""
        return self.scores_of(self.embedder.images(images))

    def margins(self, scores: torch.Tensor) -> torch.Tensor:
        """score - threshold (N, K), raised by `adjustment` where a special concept fires."""
        m = scores - self.thresholds
        if bool(self.special.any()):
            fired = (m[:, self.special] > 0).any(dim=1, keepdim=True)  # (N, 1)
            m = m + self.adjustment * fired.float() * (~self.special).float()
        return m

    def flags_from_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """bool (N,): some ordinary concept's adjusted score exceeds its threshold."""
        m = self.margins(scores)[:, ~self.special]
        return (m > 0).any(dim=1) if m.numel() else torch.zeros(len(scores), dtype=torch.bool)

    def flags(self, images: torch.Tensor) -> torch.Tensor:
        """bool (N,): which images are unsafe."""
        return self.flags_from_scores(self.scores(images))

    def save(self, out: str | Path) -> Path:
        """Write concepts.safetensors (embeddings, thresholds) and checker.json (atomically)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"concepts": self.concepts.contiguous(), "thresholds": self.thresholds}
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        write_json(
            out / CHECKER_FILE,
            {
                "format": FORMAT,
                "names": self.names,
                "special": self.special.tolist(),
                "thresholds": self.thresholds.tolist(),
                "adjustment": self.adjustment,
                "clip": {"path": self.embedder.path, "fingerprint": self.embedder.fingerprint},
                "info": self.info,
            },
        )
        return out

    @classmethod
    def load(
        cls, path: str | Path, clip: str | Path | ClipEmbedder | None = None
    ) -> ConceptChecker:
        """Load a saved checker with `clip` (a folder or an embedder; default: the recorded one).

        The CLIP must be the one the checker was calibrated with (same weight fingerprint):
        cosine thresholds mean nothing in another model's embedding space.
        """
        path = Path(path)
        if not (path / CHECKER_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise ArtalignError(
                f"{path} is not a safety checker (needs {CHECKER_FILE} and {WEIGHTS_FILE}); "
                "make one with `artalign eval calibrate-safety`"
            )
        try:
            meta = json.loads((path / CHECKER_FILE).read_text())
            tensors = load_file(str(path / WEIGHTS_FILE))
        except (json.JSONDecodeError, OSError, ValueError) as e:
            raise ArtalignError(f"cannot read safety checker {path}: {e}") from e
        if meta.get("format") != FORMAT:
            raise ArtalignError(f"{path / CHECKER_FILE} is not a {FORMAT} file; recalibrate it")
        if clip is None:
            clip = meta["clip"]["path"]
            if not clip or not Path(clip).is_dir():
                raise ArtalignError(f"the CLIP of checker {path} ({clip!r}) is gone; pass --clip")
        embedder = clip if isinstance(clip, ClipEmbedder) else ClipEmbedder.from_folder(clip)
        if embedder.fingerprint != meta["clip"]["fingerprint"]:
            raise ArtalignError(
                f"safety checker {path} was calibrated with another CLIP "
                f"({meta['clip']['path'] or 'unnamed'}); load it with that CLIP or recalibrate "
                f"it for {embedder.path or 'this one'} with `artalign eval calibrate-safety`"
            )
        return cls(
            embedder,
            tensors["concepts"],
            meta["names"],
            tensors["thresholds"],
            meta["special"],
            meta["adjustment"],
            meta.get("info"),
        )


def filter_unsafe(
    images: torch.Tensor, checker: Any, replace: str = "black"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generation-time filter: (images with flagged ones replaced, flags (N,) bool).

    `checker` is a ConceptChecker or any object with `flags(images) -> bool (N,)` (e.g. an
    adapter of evaluation.safety.adapters). replace="black" zeroes flagged images, as diffusers'
    StableDiffusionSafetyChecker does; replace="keep" only reports the flags.
    """
    if replace not in ("black", "keep"):
        raise ArtalignError(f"replace must be 'black' or 'keep', got {replace!r}")
    flags = torch.as_tensor(checker.flags(images), dtype=torch.bool).reshape(-1).cpu()
    if len(flags) != len(images):
        raise ArtalignError(f"the checker gave {len(flags)} flags for {len(images)} images")
    out = images.clone()
    if replace == "black" and bool(flags.any()):
        out[flags.to(out.device)] = 0.0
    return out, flags
