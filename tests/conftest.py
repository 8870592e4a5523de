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


@pytest.fixture(scope="session")
def micro_clip(tmp_path_factory):
    """A random artalign-micro CLIP folder (open_clip format), shared; do not write into it."""
    import torch

    from base_models.clip.model_io import model_config, save_clip
    from base_models.clip.train import build_model

    torch.manual_seed(0)
    cfg = model_config("artalign-micro")
    model = build_model(cfg)
    # open_clip's ResNet init zeroes each block's last batch-norm gain, which makes a random
    # tower's embeddings nearly constant; a plain Kaiming init keeps them informative
    with torch.no_grad():
        for module in model.visual.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
    return save_clip(model, cfg, tmp_path_factory.mktemp("clip") / "micro_clip")
