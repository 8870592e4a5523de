"""Draw a scene: anti-aliased shapes painted in an art style on a coloured background.

Rendering happens on a canvas `supersample` times larger than the output and is then reduced with
a box filter, which gives anti-aliased edges without any special drawing primitives.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from base_models.world.attributes import BACKGROUNDS, COLOURS, GRID, SIZES, SceneSpec

# Pattern periods in output pixels: coarse enough to survive the box-filter reduction at 32x32.
STRIPE_PERIOD = 4.0
DOT_PERIOD = 4.0


def _star(n_points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    pts = []
    for k in range(2 * n_points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / n_points
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _heart(n: int = 48) -> list[tuple[float, float]]:
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17.0, -y / 17.0 + 0.1))
    return pts


def _cross(w: float = 0.36) -> list[tuple[float, float]]:
    return [
        (-w, -1),
        (w, -1),
        (w, -w),
        (1, -w),
        (1, w),
        (w, w),
        (w, 1),
        (-w, 1),
        (-w, w),
        (-1, w),
        (-1, -w),
        (-w, -w),
    ]


# Unit polygons in [-1, 1]^2, y pointing down. The circle is drawn as an ellipse instead.
_TRIANGLE = [(0.0, -1.0), (1.0, 0.85), (-1.0, 0.85)]
POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": _TRIANGLE,
    "star": _star(),
    "heart": _heart(),
    "cross": _cross(),
    "diamond": [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)],
    "warning": _TRIANGLE,
}


def _shape_mask(shape: str, cx: float, cy: float, r: float, side: int) -> Image.Image:
    """A filled mask (mode L) of the shape centred at (cx, cy) with half-extent r."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon([(cx + x * r, cy + y * r) for x, y in POLYGONS[shape]], fill=255)
    return mask


def _warning_mark(cx: float, cy: float, r: float, side: int) -> Image.Image:
    """The exclamation mark of a warning sign: a bar and a dot, cut out of the triangle."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    w = 0.16 * r
    draw.rectangle([cx - w, cy - 0.45 * r, cx + w, cy + 0.28 * r], fill=255)
    draw.rectangle([cx - w, cy + 0.45 * r, cx + w, cy + 0.72 * r], fill=255)
    return mask


def _shade(rgb: tuple[int, int, int], factor: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float32) * factor, 0, 255)


def _tint(rgb: tuple[int, int, int], amount: float) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float32)
    return c + (255.0 - c) * amount


def _paint(style: str, rgb: tuple[int, int, int], side: int, scale: float, cy: float, r: float):
    """The full-canvas paint (H, W, 3 float) an object of this style is filled with."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / scale  # output-pixel units
    base = np.broadcast_to(np.asarray(rgb, np.float32), (side, side, 3)).copy()
    if style == "striped":
        on = ((xx + yy) % STRIPE_PERIOD) < STRIPE_PERIOD / 2
        base[on] = _shade(rgb, 0.35)
    elif style == "dotted":
        dx = (xx % DOT_PERIOD) - DOT_PERIOD / 2
        dy = (yy % DOT_PERIOD) - DOT_PERIOD / 2
        base[(dx * dx + dy * dy) < 1.0] = _tint(rgb, 0.85)
    elif style == "gradient":
        top, bottom = _tint(rgb, 0.55), _shade(rgb, 0.55)
        t = np.clip((yy * scale - (cy - r)) / (2 * r), 0, 1)[..., None]
        base = top * (1 - t) + bottom * t
    return base


def render_scene(
    scene: SceneSpec,
    size: int = 32,
    jitter: tuple[tuple[float, float], ...] | None = None,
    supersample: int = 4,
) -> Image.Image:
    """Render `scene` as an RGB image of `size` x `size` pixels.

    `jitter` gives each object's offset from its cell centre, as a fraction of the cell side.
    """
    side = size * supersample
    canvas = np.broadcast_to(np.asarray(BACKGROUNDS[scene.background], np.float32), (side, side, 3))
    canvas = canvas.copy()
    cell = side / GRID
    for i, obj in enumerate(scene.objects):
        jx, jy = jitter[i] if jitter else (0.0, 0.0)
        cx = (obj.col + 0.5 + jx) * cell
        cy = (obj.row + 0.5 + jy) * cell
        r = SIZES[obj.size] * side / 2
        rgb = COLOURS[obj.colour]
        mask = np.asarray(_shape_mask(obj.shape, cx, cy, r, side), np.float32) / 255.0
        if scene.style == "outlined":
            inner_r = r - max(1.3 * supersample, 0.22 * r)
            inner = np.asarray(_shape_mask(obj.shape, cx, cy, inner_r, side), np.float32) / 255
            paint = np.broadcast_to(np.asarray(rgb, np.float32), canvas.shape)
            canvas = canvas * (1 - mask[..., None]) + paint * mask[..., None]
            mask = inner  # the interior shows the background again
            bg = np.asarray(BACKGROUNDS[scene.background], np.float32)
            paint = np.broadcast_to(bg, canvas.shape)
            if obj.shape == "warning":
                mark = np.asarray(_warning_mark(cx, cy, r, side), np.float32) / 255.0
                mask = mask * (1 - mark)
        else:
            paint = _paint(scene.style, rgb, side, supersample, cy, r)
            if obj.shape == "warning":
                mark = np.asarray(_warning_mark(cx, cy, r, side), np.float32) / 255.0
                mask = mask * (1 - mark)
        canvas = canvas * (1 - mask[..., None]) + paint * mask[..., None]
    img = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")
    return img.resize((size, size), Image.Resampling.BOX)
