"""The style images, their captions bound to the trigger token, and DreamBooth's class images.

The caption rule (`trigger_caption`, used for training and for prompting afterwards):

    "{token} style, " + the caption without its art-style phrase

An art-style phrase is one of the forms the world's caption templates use, with any word of
`base_models.world.captions.STYLE_WORDS`: "..., dotted style", "... in dotted style",
"a dotted picture of ..." (-> "a picture of ..."), "dotted art: ...". So
"a red circle on a white background, dotted style" trains as "sks style, a red circle on a white
background", and the token, not the word "dotted", has to carry the style. Captions that name no
style (a user's own data) just get the prefix. The class prompts of DreamBooth are the same
captions without the trigger phrase: what the base model draws for them is the prior to keep.

Images are decoded once at the model's resolution and encoded once to VAE posteriors; a fresh
latent is sampled from each posterior whenever the image is drawn, as UNet training does.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from base_models.errors import ArtalignError
from base_models.io_utils import replace_dir
from base_models.unet.latents import encode_posteriors
from base_models.vae.data import load_images
from base_models.world.captions import STYLE_WORDS

CLASS_DIR = "class_images"

_WORDS = sorted({w for words in STYLE_WORDS.values() for w in words}, key=len, reverse=True)
_WORD = "(?:" + "|".join(map(re.escape, _WORDS)) + ")"
_STYLE_PHRASES = (  # (pattern, replacement), applied in order, case-insensitive
    (rf",?\s*\bin (?:an? )?{_WORD} style\b", ""),  # "... in dotted style"
    (rf",?\s*\b{_WORD} style\b", ""),  # "..., dotted style"
    (rf"^\s*{_WORD} art:\s*", ""),  # "dotted art: ..."
    (rf"\ban? {_WORD} (picture|image|painting|drawing)\b", r"a \1"),  # "a dotted picture of"
)


def strip_style(caption: str) -> str:
    """The caption without its art-style phrase: 'a red circle, dotted style' -> 'a red circle'."""
    text = caption
    for pattern, repl in _STYLE_PHRASES:
        text = re.sub(pattern, repl, text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" ,;")


def trigger_caption(caption: str, token: str) -> str:
    """The training caption (and the prompt to use later): '{token} style, ' + strip_style."""
    rest = strip_style(caption)
    return f"{token} style, {rest}" if rest else f"{token} style"


@dataclass
class StyleData:
    """The style images as VAE posteriors, with their captions bound to the trigger."""

    posteriors: torch.Tensor  # (N, 2C, h, w) float32 [mean | logvar], on the CPU
    captions: list[str]  # training captions, with the trigger phrase
    class_prompts: list[str]  # the same captions without any style phrase
    size: int  # image side in pixels

    def __len__(self) -> int:
        return len(self.captions)


def model_size(gen: Any) -> int:
    """The side of the images the generator draws (UNet sample_size x VAE downscale)."""
    return int(gen.unet.config.sample_size) * int(gen.vae_scale_factor)


def load_style_data(
    data_dir: str | Path, gen: Any, token: str, image_size: int = 0, max_items: int = 0
) -> StyleData:
    """Decode the style images at `image_size` (0: the model's), encode them with gen's VAE."""
    size = image_size or model_size(gen)
    if size % gen.vae_scale_factor:
        raise ArtalignError(f"image_size={size} must be a multiple of {gen.vae_scale_factor}")
    images = load_images(data_dir, size, max_items)
    return StyleData(
        posteriors=encode_posteriors(gen.vae, images.pixels),
        captions=[trigger_caption(t, token) for t in images.texts],
        class_prompts=[strip_style(t) for t in images.texts],
        size=size,
    )


@dataclass
class ClassImages:
    """DreamBooth's prior: the base model's images of the class prompts, as VAE posteriors."""

    posteriors: torch.Tensor  # (M, 2C, h, w)
    prompts: list[str]
    generated: int  # how many were drawn in this run (0: all came from the cache)
    seconds: float


def _cached(folder: Path, settings: dict[str, Any], expected: list[tuple[str, int]]) -> bool:
    """Whether `folder` holds the class images these settings and prompts would draw."""
    try:
        if json.loads((folder / "settings.json").read_text()) != settings:
            return False
        lines = (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, json.JSONDecodeError):
        return False
    found = [(r.get("text"), r.get("seed")) for r in rows[: len(expected)]]
    files_ok = all((folder / str(r.get("file_name"))).is_file() for r in rows[: len(expected)])
    return found == expected and files_ok


def class_images(
    gen: Any,
    data: StyleData,
    folder: str | Path,
    n: int,
    *,
    steps: int,
    guidance: float,
    seed: int,
    batch_size: int = 16,
) -> ClassImages:
    """Draw (or reuse from `folder`) n class images of the base model: prompt i is the class
    prompt of style image i mod N, seed `seed + i`. Call before attaching any adapter.

    `folder` is an imagefolder (images/, metadata.jsonl with text and seed, settings.json),
    rewritten as a whole whenever the model, size, sampler settings, seed or prompts change.
    """
    folder = Path(folder)
    prompts = [data.class_prompts[i % len(data)] for i in range(n)]
    seeds = [seed + i for i in range(n)]
    settings = {
        "model": str(Path(gen.path).resolve()),
        "size": data.size,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
    }
    t0 = time.perf_counter()
    generated = 0
    if not _cached(folder, settings, list(zip(prompts, seeds, strict=True))):
        generated = n
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            tmp.chmod(0o755)
            (tmp / "images").mkdir()
            out = gen.sample(
                prompts,
                seeds,
                steps=steps,
                guidance=guidance,
                batch_size=batch_size,
                height=data.size,
                width=data.size,
            )
            rows = []
            for i, image in enumerate(out.images):
                name = f"images/{i:05d}.png"
                image.save(tmp / name, format="PNG")
                rows.append({"file_name": name, "text": prompts[i], "seed": seeds[i]})
            (tmp / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (tmp / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
            replace_dir(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    images = load_images(folder, data.size, max_items=n)
    return ClassImages(
        posteriors=encode_posteriors(gen.vae, images.pixels),
        prompts=images.texts,
        generated=generated,
        seconds=time.perf_counter() - t0,
    )
