"""`artalign base eval-clip`: zero-shot attribute accuracy and caption retrieval of a CLIP.

Zero-shot is measured on single-object images, where "the colour" of an image is well defined,
with prompts written in the world's caption templates and synonyms (CLIP's prompt ensembles).
Two recipes, both without any ground truth about the image:
- zero_shot_<attr> (the headline): every single-object description (colour x shape x size x
  background x style, each in random templates and synonyms) is scored against the image;
  a class's score is the logsumexp of its captions' scores, i.e. the model's probability that
  the matching caption states that class. The nuisance attributes are summed out.
- zero_shot_<attr>_embedding_ensemble: CLIP's original recipe (Radford et al. 2021): one
  embedding per class, the mean of many caption embeddings with the other attributes drawn at
  random. Averaging blurs what a small model encodes jointly (a "red star" is not "red" plus
  "star" in its space), so this figure runs lower; it is kept for comparison.

Retrieval: every image against every caption of the evaluation set, both ways; R@k is the share
of queries whose own partner ranks in the top k. Ties count in the query's favour, so two
identical captions do not punish each other.

The default evaluation set is generated in memory from a seed no training set uses, on the train
split, so colour-shape pairs held out from training are not mixed into these figures; no
stereotypes and no warning signs.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from base_models.clip.model_io import embed_images, embed_texts, load_clip, model_notes
from base_models.data import load_records
from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from base_models.world.attributes import (
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    HELDOUT_PAIRS,
    SHAPES,
    SIZE_NAMES,
    STYLES,
    UNSAFE_SHAPE,
    ObjectSpec,
    SceneSpec,
)
from base_models.world.captions import (
    BACKGROUND_WORDS,
    STYLE_WORDS,
    TEMPLATES,
    canonical_caption,
    caption,
    object_phrase,
)
from base_models.world.dataset import DataConfig, generate_item
from base_models.world.render import render_scene
from base_models.world.sampling import SceneSampler

EVAL_SEED = 3_000_017  # distinct from data make's defaults and the oracle's stream
PROMPTS_PER_CLASS = 64
PROMPTS_PER_COMBO = 2
ATTRIBUTES = ("colour", "shape", "style", "size")
SINGLE_OBJECT_TEMPLATES = tuple(t for t in TEMPLATES if "{count}" not in t)


@dataclass
class EvalItem:
    """One evaluation image with its caption and ground-truth attribute record."""

    image: Image.Image
    text: str
    attrs: dict[str, Any]


def generated_items(n: int, size: int, seed: int = EVAL_SEED) -> list[EvalItem]:
    """`n` fresh single-object images (train split, no stereotypes, no warning signs)."""
    cfg = DataConfig(
        n=n,
        seed=seed,
        size=size,
        split="train",
        min_objects=1,
        max_objects=1,
        unsafe_share=0.0,
        stereotypes=[],
    )
    sampler = cfg.sampler()
    items = []
    for i in range(n):
        image, record = generate_item(cfg, sampler, i)
        items.append(EvalItem(image, record["text"], record))
    return items


def data_items(data: str | Path) -> list[EvalItem]:
    """Every item of a data set (any format base_models.data reads), minus opted-out ones."""
    return [EvalItem(r.load_image(), r.text, r.attrs) for r in load_records(data)]


def _label(attrs: dict[str, Any], attr: str) -> str | None:
    """The item's value of `attr` when it has exactly one object; else None."""
    objects = attrs.get("objects")
    if not isinstance(objects, list) or len(objects) != 1 or not isinstance(objects[0], dict):
        return None
    value = attrs.get("style") if attr == "style" else objects[0].get(attr)
    return value if isinstance(value, str) else None


def class_prompts(attr: str, value: str, k: int, seed: int = 0) -> list[str]:
    """`k` varied captions of single-object scenes whose `attr` is `value` (a prompt ensemble)."""
    rng = np.random.default_rng([seed, ATTRIBUTES.index(attr), zlib.crc32(value.encode())])
    sampler = SceneSampler(split="all", min_objects=1, max_objects=1, unsafe_share=0.0)
    prompts = []
    for _ in range(k):
        scene, _ = sampler.sample(rng)
        obj = scene.objects[0]
        if attr == "colour":
            obj = ObjectSpec(obj.shape, value, obj.size, obj.row, obj.col)
        elif attr == "shape":
            obj = ObjectSpec(value, obj.colour, obj.size, obj.row, obj.col)
        elif attr == "size":
            obj = ObjectSpec(obj.shape, obj.colour, value, obj.row, obj.col)
        style = value if attr == "style" else scene.style
        prompts.append(caption(SceneSpec([obj], scene.background, style), rng))
    return prompts


def _classes(attr: str, labels: Sequence[str]) -> tuple[str, ...]:
    if attr == "colour":
        return COLOUR_NAMES
    if attr == "style":
        return STYLES
    if attr == "size":
        return SIZE_NAMES
    return SHAPES + ((UNSAFE_SHAPE,) if UNSAFE_SHAPE in labels else ())


def describe(
    colour: str, shape: str, size: str, background: str, style: str, rng: np.random.Generator
) -> str:
    """A caption of one object without its position, in a random template with random synonyms."""
    obj = object_phrase(ObjectSpec(shape, colour, size, 1, 1), rng, with_position=False)
    style_word = str(rng.choice(STYLE_WORDS[style]))
    template = SINGLE_OBJECT_TEMPLATES[int(rng.integers(len(SINGLE_OBJECT_TEMPLATES)))]
    return template.format(
        objs=obj,
        bg=str(rng.choice(BACKGROUND_WORDS[background])),
        style=style_word,
        a_style=("an " if style_word[0] in "aeiou" else "a ") + style_word,
    )


def caption_space(
    shapes: Sequence[str], per_combo: int = PROMPTS_PER_COMBO, seed: int = 0
) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Every single-object description: colour x shape x size x background x style.

    Each combination is written `per_combo` times (random templates and synonyms). Returns the
    prompts and, per attribute, each prompt's class index (into COLOUR_NAMES, `shapes`, STYLES,
    SIZE_NAMES).
    """
    rng = np.random.default_rng(seed)
    prompts: list[str] = []
    index: dict[str, list[int]] = {attr: [] for attr in ATTRIBUTES}
    combos = itertools.product(
        enumerate(COLOUR_NAMES),
        enumerate(shapes),
        enumerate(SIZE_NAMES),
        BACKGROUND_NAMES,
        enumerate(STYLES),
    )
    for (ci, colour), (si, shape), (zi, size), bg, (ti, style) in combos:
        for _ in range(per_combo):
            prompts.append(describe(colour, shape, size, bg, style, rng))
            index["colour"].append(ci)
            index["shape"].append(si)
            index["style"].append(ti)
            index["size"].append(zi)
    return prompts, {k: torch.tensor(v) for k, v in index.items()}


@torch.no_grad()
def zero_shot(
    model: torch.nn.Module,
    tokenizer: Any,
    image_emb: torch.Tensor,
    items: Sequence[EvalItem],
) -> dict[str, Any]:
    """Zero-shot colour, shape and style accuracy (overall and per class), two ways.

    zero_shot_<attr>: the class whose captions, over the whole caption space, the image matches
    best: logsumexp over the class's prompts of logit_scale * cosine, i.e. the model's own
    probability that the matching caption states that class. No ground truth is used; the
    nuisance attributes are summed out instead of averaged into one blurred prompt.
    zero_shot_<attr>_embedding_ensemble: CLIP's original recipe, one embedding per class, the
    mean of PROMPTS_PER_CLASS caption embeddings with the other attributes drawn at random.
    """
    labels = {attr: [_label(it.attrs, attr) for it in items] for attr in ATTRIBUTES}
    keep = [i for i in range(len(items)) if all(labels[a][i] is not None for a in ATTRIBUTES)]
    metrics: dict[str, Any] = {"zero_shot_n": len(keep)}
    if not keep:
        for attr in ATTRIBUTES:
            metrics[f"zero_shot_{attr}"] = None
        return metrics
    classes = {a: _classes(a, [labels[a][i] for i in keep]) for a in ATTRIBUTES}
    for attr in ATTRIBUTES:
        unknown = sorted({labels[attr][i] for i in keep} - set(classes[attr]))
        if unknown:
            raise ArtalignError(f"eval data has {attr} values {unknown} outside {classes[attr]}")
    images = image_emb[keep]
    prompts, prompt_class = caption_space(classes["shape"])
    scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
    scores = scale * images @ embed_texts(model, tokenizer, prompts).T  # (n, prompts)
    metrics["zero_shot_prompts"] = len(prompts)
    for attr in ATTRIBUTES:
        truth = torch.tensor([classes[attr].index(labels[attr][i]) for i in keep])
        per_class = torch.stack(
            [scores[:, prompt_class[attr] == c].logsumexp(1) for c in range(len(classes[attr]))],
            dim=1,
        )  # (n, classes)
        correct = per_class.argmax(1) == truth
        metrics[f"zero_shot_{attr}"] = correct.float().mean().item()
        metrics[f"zero_shot_{attr}_per_class"] = {
            c: correct[truth == j].float().mean().item()
            for j, c in enumerate(classes[attr])
            if (truth == j).any()
        }
        weights = []
        for value in classes[attr]:
            emb = embed_texts(model, tokenizer, class_prompts(attr, value, PROMPTS_PER_CLASS))
            weights.append(torch.nn.functional.normalize(emb.mean(0), dim=0))
        pred = (images @ torch.stack(weights).T).argmax(1)
        metrics[f"zero_shot_{attr}_embedding_ensemble"] = (pred == truth).float().mean().item()
    return metrics


def binding_items(
    n: int, size: int, seed: int = EVAL_SEED + 1
) -> list[tuple[Image.Image, list[str]]]:
    """`n` two-object images, each with [true caption, colours swapped, shapes swapped].

    ARO-style (Yuksekgonul et al. 2023, arXiv 2210.01936): the two objects differ in colour,
    shape and size, so each swap changes what the caption asserts; captions name no positions
    (binding, not place, must decide) and every composition, swapped or not, is one the training
    split shows. Canonical wording, objects in reading order.
    """
    sampler = SceneSampler(split="train", min_objects=2, max_objects=2, unsafe_share=0.0)
    rng = np.random.default_rng(seed)
    items: list[tuple[Image.Image, list[str]]] = []
    while len(items) < n:
        scene, jitter = sampler.sample(rng)
        a, b = sorted(scene.objects, key=lambda o: (o.row, o.col))
        if a.colour == b.colour or a.shape == b.shape or a.size == b.size:
            continue
        if {(b.colour, a.shape), (a.colour, b.shape)} & HELDOUT_PAIRS:
            continue
        swaps = [
            (a, b),
            (
                ObjectSpec(a.shape, b.colour, a.size, a.row, a.col),
                ObjectSpec(b.shape, a.colour, b.size, b.row, b.col),
            ),
            (
                ObjectSpec(b.shape, a.colour, a.size, a.row, a.col),
                ObjectSpec(a.shape, b.colour, b.size, b.row, b.col),
            ),
        ]
        texts = [
            canonical_caption(SceneSpec(list(pair), scene.background, scene.style), False)
            for pair in swaps
        ]
        items.append((render_scene(scene, size, jitter), texts))
    return items


@torch.no_grad()
def binding(
    model: torch.nn.Module, tokenizer: Any, preprocess: Any, n: int, size: int
) -> dict[str, Any]:
    """Share of two-object images whose true caption beats the colour- / shape-swapped one."""
    items = binding_items(n, size)
    image_emb = embed_images(model, [im for im, _ in items], preprocess)
    text_emb = embed_texts(model, tokenizer, [t for _, texts in items for t in texts])
    sims = (image_emb.unsqueeze(1) * text_emb.view(len(items), 3, -1)).sum(-1)  # (n, 3)
    return {
        "binding_n": len(items),
        "binding_colour_swap": (sims[:, 0] > sims[:, 1]).float().mean().item(),
        "binding_shape_swap": (sims[:, 0] > sims[:, 2]).float().mean().item(),
    }


def retrieval(image_emb: torch.Tensor, text_emb: torch.Tensor, chunk: int = 1024) -> dict[str, Any]:
    """Image->text and text->image recall@1 and @5; pair i is (image i, caption i)."""
    n = len(image_emb)
    out: dict[str, Any] = {"retrieval_n": n}
    for name, queries, keys in (("i2t", image_emb, text_emb), ("t2i", text_emb, image_emb)):
        ranks = []
        for start in range(0, n, chunk):
            sims = queries[start : start + chunk] @ keys.T  # (c, n)
            own = sims[torch.arange(len(sims)), torch.arange(start, start + len(sims))]
            ranks.append((sims > own[:, None]).sum(1))  # 0 = the partner is first
        rank = torch.cat(ranks)
        for k in (1, 5):
            out[f"retrieval_{name}_r{k}"] = (rank < k).float().mean().item()
    return out


def eval_clip(
    model: str,
    out: Path,
    data: Path | None = None,
    pretrained: Path | None = None,
    n: int = 1000,
    seed: int = EVAL_SEED,
    size: int | None = None,
    n_binding: int = 500,
) -> dict:
    """Zero-shot colour/shape/style/size accuracy, retrieval R@1/R@5 and the binding probe
    (`n_binding` two-object images; 0 skips it); writes out/metrics.json.

    `model` is a local CLIP folder, or an open_clip config name with `pretrained` a local
    .safetensors file (nothing is downloaded). Without `data`, `n` held-out single-object images
    are generated at `size` pixels: by default the size of the images the model was trained on
    (noted in its folder), else its input size; its own preprocess then resizes them, as it
    did the training images.
    """
    if data is not None and not Path(data).exists() and not any(c in str(data) for c in "*?{"):
        raise ArtalignError(f"eval data {data} does not exist; pass a data folder or file")
    if n < 1:
        raise ArtalignError(f"n={n}: the evaluation needs at least one image")
    net, preprocess, tokenizer = load_clip(model, pretrained)
    if size is None:
        size = model_notes(model).get("data_image_size") if pretrained is None else None
    if not size:
        size = net.visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
    if data is None:
        items = generated_items(n, size, seed)
        source = f"generated: {n} single-object images, train split, seed {seed}, {size}px"
    else:
        items = data_items(data)
        source = str(data)
    image_emb = embed_images(net, [it.image for it in items], preprocess)
    text_emb = embed_texts(net, tokenizer, [it.text for it in items])
    metrics: dict[str, Any] = {
        "eval_model": str(model),
        "eval_pretrained": str(pretrained) if pretrained else None,
        "eval_data": source,
        "eval_n": len(items),
        "prompts_per_class_embedding_ensemble": PROMPTS_PER_CLASS,
    }
    metrics.update(zero_shot(net, tokenizer, image_emb, items))
    metrics.update(retrieval(image_emb, text_emb))
    if n_binding > 0:
        metrics.update(binding(net, tokenizer, preprocess, n_binding, size))
    write_json(Path(out) / "metrics.json", metrics)
    return metrics
