"""Shared fixtures of the reward-model tests (and of anyone else who needs preference data).

- `micro_clip` (tests/conftest.py, shared by every package's tests): a random `artalign-micro`
  CLIP folder whose Kaiming-initialised image tower makes random features enough for a head to
  learn a global image property such as the background colour.
- `tiny_hf_clip` (session, read-only): a tiny random transformers `CLIPModel` folder
  (save_pretrained, with a CLIPTokenizer and a CLIPImageProcessor) for the `transformers` kind.
- `pref_store` (session, read-only): a label store with one procedural batch ("toy") of
  TOY_PROMPTS x K images (every pair and one K-way ranking per prompt), judged by
  `truth_judge`: two simulated raters who read each image's *true* attributes (the scene the
  procedural world drew it from, in the image's settings) instead of the oracle, and prefer a
  light background (`LIGHT_LOVER`). Returns `PrefStore(db, batch, n_judgments)`.
- `truth_judge(store, batch_id, profile, raters, seed)`: the judging helper, for other stores.
- `make_store(tmp_path, prompts, k, kinds, answer)` (function): a fresh store whose every task
  gets `answer(task)` from one rater, for bad-input tests (e.g. all ties).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from base_models.raters import RaterProfile, sample_pair, sample_ranking, utility
from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
from labeling_app.store import Store

# prompts that leave the background open, so the images' backgrounds vary at random
TOY_PROMPTS = [
    f"a {size} {colour} {shape}"
    for size in ("small", "large")
    for colour in ("red", "blue", "green", "yellow")
    for shape in ("circle", "square", "triangle")
]
K = 4
# prefers light backgrounds (and ignores the prompt): learnable from random CLIP features
LIGHT_LOVER = RaterProfile(
    name="light",
    n_raters=2,
    temperature=0.05,
    fidelity_weight=0.0,
    background={"white": 1.0, "beige": 0.66, "gray": 0.33},
)


def truth_judge(
    store: Store,
    batch_id: int,
    profile: RaterProfile,
    raters: tuple[str, ...] = ("truth-0", "truth-1"),
    seed: int = 0,
    spammers: tuple[str, ...] = (),
) -> int:
    """Judge every task of a procedural batch once per rater by its images' true attributes.

    The utility is `base_models.raters.utility` of the scene record each procedural image
    stores in its settings; answers are sampled as the simulated raters do, and the raters
    named in `spammers` answer at random. Gold tasks are judged too. Returns the count.
    """
    rng = np.random.default_rng(seed)
    known = {r.name: r.id for r in store.raters()}
    ids = {name: known.get(name) or store.add_rater(name) for name in raters}
    assert set(spammers) <= set(raters), "spammers must be among the raters"
    n = 0
    with store.bulk():
        for task in store.tasks(batch_id):
            images = store.images(task.image_ids)
            u = [utility(images[i].settings["scene"], task.prompt, profile) for i in task.image_ids]
            for name in raters:
                spam = name in spammers
                if task.kind == "pair":
                    answer = {"choice": sample_pair(u[0], u[1], profile, rng, spam)}
                else:
                    answer = {"ranks": sample_ranking(u, profile, rng, spam)}
                store.record_judgment(
                    task.task_id, ids[name], answer, client_token=f"truth:{task.task_id}:{name}"
                )
                n += 1
    return n


@pytest.fixture(scope="session")
def tiny_hf_clip(tmp_path_factory) -> Path:
    """A tiny random transformers CLIPModel folder with tokenizer and image processor."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from base_models.text_encoder import make_tokenizer

    torch.manual_seed(0)
    text = {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    out = tmp_path_factory.mktemp("rlhf") / "tiny_hf_clip"
    CLIPModel(
        CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    ).save_pretrained(out)
    make_tokenizer(32).save_pretrained(str(out))
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(str(out))
    return out


@dataclass
class PrefStore:
    db: Path
    batch: str
    n_judgments: int


@pytest.fixture(scope="session")
def pref_store(tmp_path_factory) -> PrefStore:
    """The toy store (see the module docstring); read-only."""
    db = tmp_path_factory.mktemp("rlhf") / "labels.db"
    with Store(db, create=True) as store:
        plan = BatchPlan(k=K, kinds=("pair", "rank"), overlap=2, seed=0)
        batch_id = make_batch(store, TOY_PROMPTS, ProceduralSource(size=32), plan, "toy")
        n = truth_judge(store, batch_id, LIGHT_LOVER)
    return PrefStore(db, "toy", n)


@pytest.fixture
def make_store(tmp_path) -> Callable[..., Path]:
    """make_store(prompts, k=2, kinds=("pair",), answer=fn(task) -> dict) -> db path."""

    def make(
        prompts: list[str],
        k: int = 2,
        kinds: tuple[str, ...] = ("pair",),
        answer: Callable | None = None,
        name: str = "labels.db",
    ) -> Path:
        db = tmp_path / name
        with Store(db, create=True) as store:
            plan = BatchPlan(k=k, kinds=kinds, overlap=1, seed=0)
            batch_id = make_batch(store, prompts, ProceduralSource(size=16), plan, "b")
            rater = store.add_rater("solo")
            with store.bulk():
                for task in store.tasks(batch_id):
                    ans = answer(task) if answer else {"choice": "left"}
                    store.record_judgment(task.task_id, rater, ans, client_token=f"t{task.task_id}")
        return db

    return make
