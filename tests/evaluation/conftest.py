"""Shared fixtures of the evaluation tests (anyone under tests/evaluation may use them).

- `tiny_sd` / `tiny_sd_other` (session, read-only): two tiny random SD folders with different
  weights (tests/base_models/sd_fixtures.py); a 2-step sample takes milliseconds.
- `micro_clip` (session, read-only): the random artalign-micro CLIP folder of tests/conftest.py.
- `tiny_oracle_dir` (session, read-only): a tiny random attribute oracle saved as a folder (its
  readings are noise; use it where the figure does not depend on what it reads).
- `dummy_suite` (function): a suite YAML of the test plug-ins below; `write_suite(path, **keys)`
  writes one with other keys.
- `ab_run` (session, read-only): a finished `run_eval` of tiny_sd vs tiny_sd_other on the
  `AB_METRICS` suite (seed 10), with the tiny oracle and the `test_brightness` reward loader;
  `solo_run` (session, read-only): tiny_sd_other alone on the same suite and seed.
Test plug-ins (registered on import, names start with "test_", in the manner of
lm-evaluation-harness's dummy model): prompt set `test_prompts`; metrics `test_brightness`
(quality: mean pixel value per image, with CI), `test_needs_clip` (reads ctx.clip, so it is
skipped without --clip) and `test_brighter` (preference: share of pairs where the model's image
is brighter, ties half); reward loader `test_brightness` (reward = an image's mean pixel value).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from evaluation.registry import register_metric, register_prompt_set, register_reward
from evaluation.stats import mean_figure
from tests.base_models.sd_fixtures import make_tiny_sd_folder

TEST_PROMPTS = ["a red circle", "a large blue square on a white background", "a green star"]
SAMPLING = {"steps": 2, "guidance": 3.0, "eta": 0.0, "seeds_per_prompt": 2, "batch_size": 4}
AB_METRICS = {
    "test_brightness": {"on": "test_prompts"},
    "test_needs_clip": {},
    "test_brighter": {},
    "reward_score": {},
    "reward_winrate": {},
    "rater_winrate": {},
}


@register_prompt_set("test_prompts")
def _test_prompts(n: int = 3, category: str = "smoke") -> list[dict]:
    """The first `n` TEST_PROMPTS as items."""
    return [{"prompt": p, "category": category} for p in TEST_PROMPTS[:n]]


def brightness(images: torch.Tensor) -> np.ndarray:
    """Mean pixel value of each image (N,): the dummy metric's and dummy reward's value."""
    return images.double().mean(dim=(1, 2, 3)).numpy()


@register_metric("test_brightness", aspect="quality", higher_is_better=True)
def _test_brightness(ctx, samples, on=None):
    """Mean brightness of the images (dummy metric for tests)."""
    if on is not None:
        samples = samples.select([item["set"] == on for item in samples.items])
    return {"brightness": mean_figure(brightness(samples.images), n_boot=200, seed=ctx.seed)}


@register_metric("test_needs_clip", aspect="alignment", higher_is_better=True)
def _test_needs_clip(ctx, samples):
    """Reads the CLIP model (dummy metric that is skipped without --clip)."""
    ctx.clip  # noqa: B018  (raises ArtalignError without --clip)
    return {"n_images": mean_figure(np.ones(len(samples)), n_boot=50)}


@register_metric("test_brighter", aspect="preference", higher_is_better=True)
def _test_brighter(ctx, samples):
    """Share of pairs where the model's image is brighter than the baseline's (ties half)."""
    a, b = brightness(samples.images), brightness(ctx.other.images)
    return {"brighter": mean_figure((a > b) + 0.5 * (a == b), n_boot=200, seed=ctx.seed)}


@register_reward("test_brightness")
def _brightness_reward(path, device="cpu"):
    def reward_fn(images, prompts, metadata=None):
        return torch.as_tensor(brightness(images), dtype=torch.float32), {}

    return reward_fn


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return make_tiny_sd_folder(tmp_path_factory.mktemp("eval") / "sd_a", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_other(tmp_path_factory) -> Path:
    return make_tiny_sd_folder(tmp_path_factory.mktemp("eval") / "sd_b", seed=1)


@pytest.fixture(scope="session")
def tiny_oracle_dir(tmp_path_factory) -> Path:
    from base_models.oracle import AttributeOracle

    torch.manual_seed(0)
    oracle = AttributeOracle(channels=(4, 8, 8), hidden=8).eval()
    return oracle.save(tmp_path_factory.mktemp("eval") / "oracle")


def write_suite(path: Path, **keys) -> Path:
    """A suite YAML of the test plug-ins (2 steps, 2 seeds per prompt), with `keys` replaced."""
    suite = {
        "name": "dummy",
        "description": "test plug-ins only",
        "sampling": dict(SAMPLING),
        "prompt_sets": {"test_prompts": {"n": 3}},
        "metrics": {
            "test_brightness": {"on": "test_prompts"},
            "test_needs_clip": {},
            "test_brighter": {},
        },
    }
    suite.update(keys)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.fixture
def dummy_suite(tmp_path) -> Path:
    return write_suite(tmp_path / "dummy.yaml")


def _instruments(oracle: Path) -> dict:
    # any existing path stands for the reward model: the test loader ignores it
    return {
        "oracle_path": oracle,
        "reward_path": oracle,
        "reward_loader": "test_brightness",
        "seed": 10,
        "n_boot": 200,
    }


@pytest.fixture(scope="session")
def ab_run(tiny_sd, tiny_sd_other, tiny_oracle_dir, tmp_path_factory) -> Path:
    from evaluation.run import run_eval

    root = tmp_path_factory.mktemp("ab_run")
    suite = write_suite(root / "ab.yaml", name="ab", metrics=AB_METRICS)
    run_eval(tiny_sd, suite, root / "run", baseline=tiny_sd_other, **_instruments(tiny_oracle_dir))
    return root / "run"


@pytest.fixture(scope="session")
def solo_run(tiny_sd_other, tiny_oracle_dir, tmp_path_factory) -> Path:
    from evaluation.run import run_eval

    root = tmp_path_factory.mktemp("solo_run")
    suite = write_suite(root / "ab.yaml", name="ab", metrics=AB_METRICS)
    run_eval(tiny_sd_other, suite, root / "run", **_instruments(tiny_oracle_dir))
    return root / "run"
