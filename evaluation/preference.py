"""Preference between two models' images of the same prompts and seeds: win-rates.

A win-rate compares image i of model A with image i of model B (same prompt, same seed), so the
pairs differ only in the model. Two judges:
- `rater_winrate`: a simulated rater of a given profile (base_models.raters) reads both images
  with the oracle and answers with its Bradley–Terry noise and ties; the figure is the expected
  share of wins with ties as half (the exact expectation over the rater's noise, so no sampling
  error beyond the images themselves);
- `reward_winrate`: a reward function `reward_fn(images, prompts, metadata) -> (rewards, info)`;
  a win when A's reward is higher, ties as half.
Both return a Figure with a bootstrap CI over prompts: the pairs of one prompt (its seeds) are
resampled together, as they are not independent of each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from base_models.errors import ArtalignError
from base_models.oracle.expected import legibility
from base_models.oracle.fidelity import parse_prompt
from base_models.oracle.reading import read_images
from base_models.raters import both_illegible, pair_probabilities, utility
from evaluation.stats import Figure, mean_figure


def _check_pairs(images_a: Any, images_b: Any, prompts: Sequence[str]) -> None:
    if not (len(images_a) == len(images_b) == len(prompts)):
        raise ArtalignError(
            f"a win-rate needs one image of each model per prompt: got {len(images_a)} and "
            f"{len(images_b)} images for {len(prompts)} prompts"
        )
    if len(prompts) == 0:
        raise ArtalignError("a win-rate needs at least one pair of images")


def rater_pair_credits(
    u_a: np.ndarray, u_b: np.ndarray, profile: Any, illegible: Sequence[bool] | None = None
) -> np.ndarray:
    """Expected credit of A per pair for an honest rater of `profile`: P(A) + ½·P(tie, both bad).

    `illegible[i]`: both images of pair i are below the profile's legibility bar.
    """
    flags = [False] * len(u_a) if illegible is None else list(illegible)
    out = []
    for a, b, flag in zip(u_a, u_b, flags, strict=True):
        q = pair_probabilities(float(a), float(b), profile, flag)
        out.append(q["left"] + 0.5 * (q["tie"] + q["both_bad"]))
    return np.asarray(out, dtype=np.float64)


def read_records(oracle: Any, images: Any) -> list[dict[str, Any]]:
    """The oracle's reading of each image as a record with its probabilities."""
    return [r.to_record(probabilities=True) for r in read_images(oracle, images)]


def utilities_of(
    records: Sequence[dict[str, Any]], prompts: Sequence[str], profile: Any
) -> np.ndarray:
    """The profile's hidden (expected) utility of each (record, prompt)."""
    parsed: dict[str, dict] = {}
    values = []
    for record, prompt in zip(records, prompts, strict=True):
        if prompt not in parsed:
            parsed[prompt] = parse_prompt(prompt)
        values.append(utility(record, parsed[prompt], profile))
    return np.asarray(values, dtype=np.float64)


def rater_utilities(oracle: Any, profile: Any, images: Any, prompts: Sequence[str]) -> np.ndarray:
    """The profile's hidden utility of each (image, prompt), read by the oracle."""
    return utilities_of(read_records(oracle, images), prompts, profile)


def rater_winrate(
    oracle: Any, profile: Any, images_a: Any, images_b: Any, prompts: Sequence[str], seed: int = 0
) -> Figure:
    """Share of pairs a simulated rater of `profile` prefers A's image (ties half), with CI.

    Pair i is (images_a[i], images_b[i]) of prompts[i]; the CI resamples prompts.
    """
    _check_pairs(images_a, images_b, prompts)
    rec_a, rec_b = read_records(oracle, images_a), read_records(oracle, images_b)
    u_a, u_b = utilities_of(rec_a, prompts, profile), utilities_of(rec_b, prompts, profile)
    illegible = [
        both_illegible([legibility(a), legibility(b)], profile)
        for a, b in zip(rec_a, rec_b, strict=True)
    ]
    credits = rater_pair_credits(u_a, u_b, profile, illegible)
    return mean_figure(credits, seed=seed, groups=prompts)


def reward_winrate(
    reward_fn: Callable[..., tuple[torch.Tensor, dict[str, Any]]],
    images_a: Any,
    images_b: Any,
    prompts: Sequence[str],
    seed: int = 0,
) -> Figure:
    """Share of pairs where the reward function scores A's image higher (ties half), with CI.

    Pair i is (images_a[i], images_b[i]) of prompts[i]; the CI resamples prompts.
    """
    _check_pairs(images_a, images_b, prompts)
    r_a, _ = reward_fn(images_a, list(prompts), None)
    r_b, _ = reward_fn(images_b, list(prompts), None)
    r_a, r_b = np.asarray(r_a, dtype=np.float64), np.asarray(r_b, dtype=np.float64)
    credit = (r_a > r_b) + 0.5 * (r_a == r_b)
    return mean_figure(credit.astype(np.float64), seed=seed, groups=prompts)
