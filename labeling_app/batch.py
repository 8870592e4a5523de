"""Make a labeling batch: k images per prompt (with seeds and settings recorded) and its tasks.

Images come from a Stable Diffusion folder (`GeneratorSource`) or, with no trained model,
from the procedural world (`ProceduralSource`): the prompt is parsed back into attributes
(`parse_prompt`), what it leaves open is drawn at random, and with `mistake_rate` one asked-for
attribute is changed, so images differ in prompt fidelity as a generator's would.
Image k of prompt i uses seed S + i*K + k (as `artalign generate`). Tasks: every pair of a
prompt's images (or `pairs_per_prompt` of them) and/or one k-way ranking, in a seeded random
display order so that no position is favoured.
"""

from __future__ import annotations

import io
import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from base_models.errors import ArtalignError
from base_models.imaging import GENERATED_PNG_KEYS, png_info
from base_models.world.render import render_scene
from labeling_app.batch_scenes import scene_for_prompt
from labeling_app.store import Store

KINDS = ("pair", "rank")


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line) or a .jsonl file (a "text" field per line)."""
    path = Path(path)
    if not path.is_file():
        raise ArtalignError(f"prompt file {path} does not exist; pass a text or .jsonl file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ArtalignError(f"prompt file {path} is not UTF-8 text") from None
    prompts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                text = json.loads(line).get("text")
            except (json.JSONDecodeError, AttributeError):
                text = None
            if not isinstance(text, str) or not text.strip():
                raise ArtalignError(f'{path}:{n}: each line must be JSON with a "text" string')
            line = text
        prompts.append(line.strip())
    if not prompts:
        raise ArtalignError(f"prompt file {path} holds no prompts; write one prompt per line")
    return prompts


def parse_kinds(text: str) -> tuple[str, ...]:
    """'pair,rank' -> ('pair', 'rank'); ArtalignError on an unknown kind."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ArtalignError(f"--kinds must list pair and/or rank (comma-separated), got {text!r}")
    return kinds


def png_with_provenance(image, record: dict[str, Any]) -> bytes:
    """PNG bytes with the text chunks `artalign generate` writes (prompt, seed, model, settings)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info({"lora": None, **record}, GENERATED_PNG_KEYS))
    return buf.getvalue()


class ImageSource(Protocol):
    """Where a batch's images come from."""

    model: str

    def settings(self) -> dict[str, Any]: ...

    def render(self, prompts: list[str], seeds: list[int]) -> list[tuple[bytes, dict]]:
        """One PNG (with provenance chunks) and its per-image settings per (prompt, seed)."""
        ...


@dataclass
class GeneratorSource:
    """Images from a local Stable Diffusion folder through `base_models.generator.Generator`,
    with LoRA adapters attached when `lora` names a saved adapter folder (e.g. an aligned model's
    OUT/lora, to label its images in a second round)."""

    model_dir: str
    steps: int = 50
    guidance: float = 7.5
    eta: float = 0.0
    batch_size: int = 8
    device: str | None = None
    lora: str | None = None
    model: str = field(init=False)

    def __post_init__(self) -> None:
        # lazy: torch, kept out of `artalign --help` (procedural batches need no generator)
        import torch

        from base_models.generator import Generator

        self.model = str(self.model_dir)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._gen = Generator.from_folder(self.model_dir, device=device)
        if self.lora is not None:
            self._gen.attach_lora(self.lora)

    def settings(self) -> dict[str, Any]:
        lora = {"lora": str(self.lora)} if self.lora is not None else {}
        return {"steps": self.steps, "guidance": self.guidance, "eta": self.eta, **lora}

    def render(self, prompts: list[str], seeds: list[int]) -> list[tuple[bytes, dict]]:
        out = self._gen.sample(
            prompts,
            seeds,
            steps=self.steps,
            guidance=self.guidance,
            eta=self.eta,
            batch_size=self.batch_size,
        )
        result = []
        for text, seed, image in zip(prompts, seeds, out.images, strict=True):
            settings = {**self.settings(), "height": image.height, "width": image.width}
            record = {
                "prompt": text,
                "seed": seed,
                "model": self.model,
                "settings": settings,
                "lora": str(self.lora) if self.lora is not None else None,
            }
            result.append((png_with_provenance(image, record), settings))
        return result


@dataclass
class ProceduralSource:
    """Images drawn by the procedural world to match (or, by `mistake_rate`, miss) the prompt."""

    size: int = 32
    mistake_rate: float = 0.5
    model: str = "procedural"

    def __post_init__(self) -> None:
        if not 0.0 <= self.mistake_rate <= 1.0:
            raise ArtalignError(f"mistake rate must be in [0, 1], got {self.mistake_rate}")
        if self.size < 8:
            raise ArtalignError(f"procedural image size must be >= 8 pixels, got {self.size}")

    def settings(self) -> dict[str, Any]:
        return {"size": self.size, "mistake_rate": self.mistake_rate}

    def render(
        self, prompts: list[str], seeds: list[int], mistake: bool | None = None
    ) -> list[tuple[bytes, dict]]:
        result = []
        for text, seed in zip(prompts, seeds, strict=True):
            rng = np.random.default_rng(seed)
            wrong = rng.random() < self.mistake_rate if mistake is None else mistake
            scene, jitter, changed = scene_for_prompt(text, rng, mistake=wrong)
            image = render_scene(scene, self.size, jitter)
            settings = {**self.settings(), "scene": scene.to_record(), "mistake": changed}
            record = {"prompt": text, "seed": seed, "model": self.model, "settings": settings}
            result.append((png_with_provenance(image, record), settings))
        return result


@dataclass
class BatchPlan:
    """What tasks to make from k images per prompt."""

    k: int = 4
    kinds: tuple[str, ...] = ("pair",)
    overlap: int = 1
    pairs_per_prompt: int | None = None  # None: every one of the k-choose-2 pairs
    seed: int = 0
    gold_pairs: int = 0  # procedural only: pairs of a faithful and a mistaken image

    def check(self) -> None:
        if self.k < 2:
            raise ArtalignError(f"--k must be >= 2 (a task compares images), got {self.k}")
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ArtalignError(f"kinds must be pair and/or rank, got {self.kinds}")
        if self.overlap < 1:
            raise ArtalignError(f"--overlap must be >= 1, got {self.overlap}")
        n_pairs = self.k * (self.k - 1) // 2
        if self.pairs_per_prompt is not None and not 1 <= self.pairs_per_prompt <= n_pairs:
            raise ArtalignError(
                f"--pairs-per-prompt must be 1-{n_pairs} for k={self.k}, "
                f"got {self.pairs_per_prompt}"
            )
        if self.gold_pairs < 0:
            raise ArtalignError(f"--gold-pairs must be >= 0, got {self.gold_pairs}")


def _add_gold(store: Store, batch_id: int, prompts: list[str], source, plan: BatchPlan) -> int:
    """Gold pairs: a faithful and a mistaken image of one prompt; the faithful one is right."""
    rng = random.Random(plan.seed + 1)
    made, base = 0, plan.seed + 10_000_000  # seeds apart from the batch's own images
    for n in range(plan.gold_pairs * 4):  # prompts with nothing to get wrong are passed over
        if made == plan.gold_pairs:
            break
        text, seed = prompts[n % len(prompts)], base + 2 * n
        ((good, good_s),) = source.render([text], [seed], mistake=False)
        ((bad, bad_s),) = source.render([text], [seed + 1], mistake=True)
        if bad_s["mistake"] is None:
            continue
        pid = store.add_prompt(text)
        ids = [
            store.add_image(pid, good, seed=seed, model=source.model, settings=good_s),
            store.add_image(pid, bad, seed=seed + 1, model=source.model, settings=bad_s),
        ]
        left_good = rng.random() < 0.5
        store.add_task(
            batch_id,
            "pair",
            pid,
            ids if left_good else ids[::-1],
            gold={"choice": "left" if left_good else "right"},
        )
        made += 1
    if made < plan.gold_pairs:
        raise ArtalignError("too few prompts name attributes to make gold pairs from")
    return made


def make_batch(
    store: Store,
    prompts: list[str],
    source: ImageSource,
    plan: BatchPlan,
    name: str,
    extra_settings: dict[str, Any] | None = None,
    chunk: int = 64,
) -> int:
    """Render k images per prompt, store them and the batch's tasks; return the batch id.

    Rendering happens first; the rows (batch, prompts, images, tasks) are then written in one
    transaction, so a failed run leaves no half batch (only unreferenced image files).
    """
    plan.check()
    if not prompts:
        raise ArtalignError("no prompts given; pass a prompt file with one prompt per line")
    if plan.gold_pairs and not isinstance(source, ProceduralSource):
        raise ArtalignError("gold pairs need --procedural (its images know their mistakes)")
    if any(b.name == name for b in store.batches()):
        raise ArtalignError(f"a batch named {name!r} exists; pass another --batch-name")
    jobs = [
        (i, text, plan.seed + i * plan.k + j)
        for i, text in enumerate(prompts)
        for j in range(plan.k)
    ]
    rendered: list[tuple[bytes, dict]] = []
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        rendered += source.render([j[1] for j in part], [j[2] for j in part])
    settings = {
        "model": source.model,
        **source.settings(),
        "k": plan.k,
        "kinds": list(plan.kinds),
        "overlap": plan.overlap,
        "pairs_per_prompt": plan.pairs_per_prompt,
        "seed": plan.seed,
        "n_prompts": len(prompts),
        **(extra_settings or {}),
    }
    rng = random.Random(plan.seed)
    with store.bulk():
        batch_id = store.create_batch(name, settings)
        for i, text in enumerate(prompts):
            pid = store.add_prompt(text)
            ids = []
            for j in range(plan.k):
                (_, _, seed), (png, image_settings) = jobs[i * plan.k + j], rendered[i * plan.k + j]
                ids.append(
                    store.add_image(
                        pid, png, seed=seed, model=source.model, settings=image_settings
                    )
                )
            if "pair" in plan.kinds:
                pairs = list(itertools.combinations(ids, 2))
                if plan.pairs_per_prompt is not None:
                    pairs = rng.sample(pairs, plan.pairs_per_prompt)
                for a, b in pairs:
                    shown = [a, b] if rng.random() < 0.5 else [b, a]
                    store.add_task(batch_id, "pair", pid, shown, overlap=plan.overlap)
            if "rank" in plan.kinds:
                shown = rng.sample(ids, len(ids))
                store.add_task(batch_id, "rank", pid, shown, overlap=plan.overlap)
        if plan.gold_pairs:
            _add_gold(store, batch_id, prompts, source, plan)
    return batch_id
