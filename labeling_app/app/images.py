"""Show store images large with crisp pixels (nearest-neighbour upscaling of 32x32 canvases)."""

from __future__ import annotations

import streamlit as st
from PIL import Image

from labeling_app.store import Store


def upscale(image: Image.Image, width: int) -> Image.Image:
    """`image` resized to `width` pixels wide with nearest-neighbour, keeping its aspect ratio."""
    height = max(1, round(image.height * width / image.width))
    return image.convert("RGB").resize((width, height), Image.Resampling.NEAREST)


def show_image(store: Store, image_id: int, width: int, caption: str | None = None) -> None:
    """Draw one image, read only through `store.image_path` (which keeps paths in the store)."""
    with Image.open(store.image_path(image_id)) as image:
        big = upscale(image, width)
    st.image(big, caption=caption, output_format="PNG")
