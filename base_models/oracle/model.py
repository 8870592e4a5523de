"""The attribute oracle: a small CNN that reads a procedural image's objects, background and style.

The world puts each object in its own cell of a 3x3 grid (offset from the cell centre by at most
0.12 of a cell), so the oracle is a detector with one fixed anchor per cell: a shared convolutional
backbone, then for every cell a shared head that reads the features around that cell and says
whether an object is there and, if so, its shape, colour and size. Background and style are read
from the pooled features of the whole image.

Receptive fields: a large object spans 0.40 of the canvas, i.e. 1.2 cells, and a neighbour may
overlap it. The backbone's features at stride 4 see 32 input pixels, and the cell head samples a
3x3 patch of them spanning the cell plus a third of a cell on each side, so every cell reads its
whole object and enough of its neighbours to tell them apart.

Saved as `model.safetensors` + `config.json`; the config holds the vocabularies, so a loaded
oracle knows its own label order even if the world's vocabulary grows later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from base_models.errors import ArtalignError
from base_models.io_utils import atomic_path, write_json
from base_models.world.attributes import (
    ALL_SHAPES,
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    GRID,
    SIZE_NAMES,
    STYLES,
)

FORMAT = "artalign-attribute-oracle-v1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
VOCAB_KEYS = ("shapes", "colours", "sizes", "backgrounds", "styles")


def default_vocab() -> dict[str, list[str]]:
    """The world's current label lists, in the order the heads predict them."""
    return {
        "shapes": list(ALL_SHAPES),
        "colours": list(COLOUR_NAMES),
        "sizes": list(SIZE_NAMES),
        "backgrounds": list(BACKGROUND_NAMES),
        "styles": list(STYLES),
    }


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _temperatures(table: Any, where: Path) -> dict[str, float]:
    heads = ("shape", "colour", "size", "background", "style")
    if not isinstance(table, dict) or any(k not in heads for k in table):
        raise ArtalignError(f"{where}: temperatures must map some of {heads} to numbers")
    out = {}
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ArtalignError(f"{where}: temperature of {key} is {value!r}; it must be > 0")
        out[key] = float(value)
    return out


class AttributeOracle(nn.Module):
    """Reads per-cell presence, shape, colour and size, and per-image background and style.

    `forward(pixels)` takes (B, 3, size, size) floats in [0, 1] and returns a dict of logits:
    presence (B, 9), shape (B, 9, n_shapes), colour (B, 9, n_colours), size (B, 9, n_sizes),
    background (B, n_backgrounds), style (B, n_styles). Cells are in reading order (row * 3 + col).
    """

    def __init__(
        self,
        size: int = 32,
        channels: tuple[int, int, int] | list[int] = (32, 64, 96),
        hidden: int = 192,
        vocab: dict[str, list[str]] | None = None,
        grid: int = GRID,
    ) -> None:
        super().__init__()
        self.vocab = {k: list(v) for k, v in (vocab or default_vocab()).items()}
        missing = [k for k in VOCAB_KEYS if not self.vocab.get(k)]
        if missing:
            raise ArtalignError(f"oracle vocab lacks {missing}; it needs every one of {VOCAB_KEYS}")
        self.size, self.grid, self.hidden = int(size), int(grid), int(hidden)
        # softmax temperature per head, fitted by `artalign oracle calibrate` (1 if absent)
        self.temperatures: dict[str, float] = {}
        self.channels = tuple(int(c) for c in channels)
        c1, c2, c3 = self.channels
        # (B, 3, S, S) -> (B, c1, S, S) -> (B, c2, S/2, S/2) -> (B, c3, S/4, S/4)
        self.backbone = nn.Sequential(
            _conv(3, c1),
            _conv(c1, c1),
            nn.MaxPool2d(2),
            _conv(c1, c2),
            _conv(c2, c2),
            nn.MaxPool2d(2),
            _conv(c2, c3),
            _conv(c3, c3),
        )
        # Sample points: per cell, a 3x3 patch around its centre, in grid_sample's [-1, 1] units.
        self.register_buffer("sample_grid", self._sample_grid(), persistent=False)
        n_cells = self.grid * self.grid
        self.cell_embed = nn.Parameter(torch.zeros(n_cells, hidden))
        self.cell_mlp = nn.Sequential(nn.Linear(c3 * 9, hidden), nn.ReLU(inplace=True))
        self.cell_mlp2 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.presence_head = nn.Linear(hidden, 1)
        self.shape_head = nn.Linear(hidden, len(self.vocab["shapes"]))
        self.colour_head = nn.Linear(hidden, len(self.vocab["colours"]))
        self.size_head = nn.Linear(hidden, len(self.vocab["sizes"]))
        self.image_mlp = nn.Sequential(nn.Linear(2 * c3, hidden), nn.ReLU(inplace=True))
        self.background_head = nn.Linear(hidden, len(self.vocab["backgrounds"]))
        self.style_head = nn.Linear(hidden, len(self.vocab["styles"]))

    def _sample_grid(self) -> torch.Tensor:
        g = self.grid
        centres = (torch.arange(g, dtype=torch.float32) + 0.5) / g * 2 - 1  # (g,)
        offsets = torch.tensor([-1.0, 0.0, 1.0]) / g * (2 / 3)  # +-1/3 cell, in [-1, 1] units
        pts = []
        for r in range(g):
            for c in range(g):
                for dy in offsets:
                    for dx in offsets:
                        pts.append((centres[c] + dx, centres[r] + dy))  # (x, y) for grid_sample
        return torch.tensor(pts).view(1, g * g, 9, 2)  # (1, cells, 9 points, xy)

    def arch_config(self) -> dict[str, Any]:
        """What `__init__` needs to rebuild this network (stored in config.json)."""
        return {
            "size": self.size,
            "channels": list(self.channels),
            "hidden": self.hidden,
            "grid": self.grid,
            "vocab": self.vocab,
        }

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        b = pixels.shape[0]
        n_cells = self.grid * self.grid
        x = (pixels - 0.5) / 0.25
        feats = self.backbone(x)  # (B, c3, S/4, S/4)
        grid = self.sample_grid.to(feats.dtype).expand(b, -1, -1, -1)  # (B, cells, 9, 2)
        # (B, c3, cells, 9): bilinear reads of the feature map at each cell's 3x3 points
        patch = F.grid_sample(feats, grid, mode="bilinear", align_corners=False)
        patch = patch.permute(0, 2, 1, 3).reshape(b, n_cells, -1)  # (B, cells, c3 * 9)
        h = self.cell_mlp(patch) + self.cell_embed  # (B, cells, hidden)
        h = self.cell_mlp2(h)
        pooled = torch.cat([feats.mean(dim=(2, 3)), feats.amax(dim=(2, 3))], dim=1)  # (B, 2*c3)
        g = self.image_mlp(pooled)  # (B, hidden)
        return {
            "presence": self.presence_head(h).squeeze(-1),  # (B, cells)
            "shape": self.shape_head(h),  # (B, cells, n_shapes)
            "colour": self.colour_head(h),
            "size": self.size_head(h),
            "background": self.background_head(g),  # (B, n_backgrounds)
            "style": self.style_head(g),
        }

    # ------------------------------------------------------------------ save / load

    def save(self, directory: str | Path) -> Path:
        """Write `model.safetensors` and `config.json` to `directory`, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        config = {"format": FORMAT, **self.arch_config()}
        if self.temperatures:
            config["temperatures"] = dict(self.temperatures)
        write_json(directory / CONFIG_NAME, config)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> AttributeOracle:
        """Load an oracle saved by `save` (safetensors only; nothing is unpickled)."""
        directory = Path(directory)
        hint = "train one with `artalign oracle train --out DIR`"
        if not directory.is_dir():
            raise ArtalignError(f"oracle folder {directory} does not exist; {hint}")
        cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not cfg_path.is_file():
            raise ArtalignError(f"{directory} has no {CONFIG_NAME}, so it is not an oracle; {hint}")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ArtalignError(f"{cfg_path} is not valid JSON ({e}); retrain the oracle") from e
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise ArtalignError(
                f"{cfg_path} is not an attribute-oracle config (format {FORMAT}); {hint}"
            )
        if not weights.is_file():
            raise ArtalignError(f"{directory} has no {WEIGHTS_NAME}; {hint}")
        try:
            model = cls(
                size=cfg["size"],
                channels=cfg["channels"],
                hidden=cfg["hidden"],
                vocab=cfg["vocab"],
                grid=cfg.get("grid", GRID),
            )
            state = load_file(str(weights))
            model.load_state_dict(state)
            model.temperatures = _temperatures(cfg.get("temperatures") or {}, cfg_path)
        except KeyError as e:
            raise ArtalignError(f"{cfg_path} lacks the key {e}; retrain the oracle") from e
        except (SafetensorError, RuntimeError, OSError) as e:
            raise ArtalignError(f"{weights} does not match {cfg_path} or is corrupt: {e}") from e
        return model.to(device).eval()
