"""Shared fixtures of the labeling tests: a fresh store with people and a small batch.

`store_env` makes, in `tmp_path`, a store with an admin and two raters (passwords in
PASSWORDS) and one procedural batch (BATCH_PROMPTS x K images, every pair and one 3-way
ranking per prompt, overlap 2). The `store`, `admin`, `alice`, `bob` and `batch_id` fixtures
are views of it; `procedural_batch(store, ...)` makes more batches; `tiny_sd` is a tiny random
Stable Diffusion folder (session-wide, read-only). Images are rendered by
the procedural world, so no model is needed and the set-up takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
from labeling_app.store import Rater, Store

PASSWORDS = {"admin": "admin-pass-1", "alice": "alice-pass-1", "bob": "bob-pass-1"}
BATCH_PROMPTS = [
    "a large red circle on a white background, flat style",
    "a small blue square and a green star, striped style",
    "a yellow heart in the top left on a black background",
]
K = 3  # images per prompt: 3 pairs + 1 ranking per prompt


def procedural_batch(
    store: Store,
    name: str = "b1",
    prompts: list[str] | None = None,
    k: int = K,
    kinds: tuple[str, ...] = ("pair", "rank"),
    overlap: int = 2,
    gold_pairs: int = 0,
    seed: int = 0,
) -> int:
    """A batch of procedural images (16 px, quick to draw); returns its id."""
    plan = BatchPlan(k=k, kinds=kinds, overlap=overlap, seed=seed, gold_pairs=gold_pairs)
    source = ProceduralSource(size=16)
    return make_batch(store, prompts or BATCH_PROMPTS, source, plan, name)


@dataclass
class StoreEnv:
    """Everything the `store_env` fixture made."""

    store: Store
    db: Path
    admin: Rater
    alice: Rater
    bob: Rater
    batch_id: int


@pytest.fixture
def store_env(tmp_path) -> StoreEnv:
    db = tmp_path / "labels.db"
    store = Store(db, create=True)
    people = {}
    for name, password in PASSWORDS.items():
        role = "admin" if name == "admin" else "rater"
        people[name] = store.rater(store.add_rater(name, password, role=role))
    batch_id = procedural_batch(store)
    yield StoreEnv(store, db, people["admin"], people["alice"], people["bob"], batch_id)
    store.close()


@pytest.fixture
def store(store_env) -> Store:
    """A fresh store (see module docstring); closed after the test."""
    return store_env.store


@pytest.fixture
def admin(store_env) -> Rater:
    return store_env.admin


@pytest.fixture
def alice(store_env) -> Rater:
    return store_env.alice


@pytest.fixture
def bob(store_env) -> Rater:
    return store_env.bob


@pytest.fixture
def batch_id(store_env) -> int:
    return store_env.batch_id


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random SD folder (`make_tiny_sd_folder`), shared by the session: do not write."""
    from tests.base_models.sd_fixtures import make_tiny_sd_folder

    return make_tiny_sd_folder(tmp_path_factory.mktemp("sd") / "tiny")
