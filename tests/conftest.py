"""Shared test set-up: no hub access, tiny data sets built once per session."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory):
    """A 16-image train-split data set made by `make_dataset` (shared, read-only)."""
    from base_models.world.dataset import DataConfig, make_dataset

    return make_dataset(DataConfig(n=16, seed=3), tmp_path_factory.mktemp("data") / "micro")
