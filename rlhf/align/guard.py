"""The reward-hacking guard: instruments the trainer does not optimise, measured every N epochs.

A reward model is a proxy; optimising it hard finds images it over-rates (Gao et al. 2022 call
this over-optimisation; DDPO's users saw reward curves rise while images degraded). The guard
samples fixed held-out prompts with fixed seeds — once from the base model (adapters off) at the
start, then from the current model at every check — and measures:
- `fidelity`: mean prompt fidelity read by the attribute oracle (base_models.oracle.fidelity);
- `clip_score`: mean zero-shot CLIP score of the guard's CLIP (rlhf.reward.baselines);
- `fid_to_base`: FID (CLIP features) between current and base samples — how far images moved;
- `fid_drift`: relative change of the FID to a reference set of real images against the base
  model's: (FID_now - FID_base) / FID_base (needs `reference`);
- `rater_winrate`: expected share of pairs (same prompt and seed) a held-out simulated rater
  prefers the current image over the base one (evaluation.preference.rater_winrate);
- `reward_winrate` and `proxy_gap`: with the trainer's `reward_fn`, the share of the same pairs
  the training reward prefers the current image, and that minus the rater win-rate: how far the
  proxy's view of progress runs ahead of the raters' (Gao et al.'s gap, per check).
The guard score is fidelity + rater win-rate (whichever are measured). `stop` is raised when, for
`patience` checks in a row, the training reward is above its value at the best check while the
guard score is below the best by more than `min_delta`: the reward rises while what it should
stand for falls. `is_best` marks the check whose adapters the trainer keeps as OUT/best.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_models.config import BaseConfig, hfield
from base_models.errors import ArtalignError
from base_models.generator.evaluate import clip_fid
from base_models.imaging import to_pil
from base_models.oracle import AttributeOracle
from base_models.oracle.fidelity import fidelity, parse_prompt
from base_models.oracle.reading import read_images
from base_models.raters import load_profile
from evaluation.preference import rater_winrate, reward_winrate
from rlhf.reward.baselines import clip_score_fn


@dataclasses.dataclass
class GuardConfig(BaseConfig):
    """What the guard measures, on which prompts, and when it stops a run.

    The trainers' configs inherit these fields (all prefixed `guard_`), so one YAML file or a
    `guard_every=2` override sets them; `Guard(cfg, generator)` reads them from either.
    """

    guard_every: int = hfield(0, "Check every N epochs (DPO: steps); 0 turns the guard off.")
    guard_prompts: str | None = hfield(None, "Held-out prompts file, one a line.")
    guard_n_prompts: int = hfield(32, "Use the first this many held-out prompts.")
    guard_seeds_per_prompt: int = hfield(2, "Images per prompt (fixed seeds, as the base).")
    guard_steps: int = hfield(20, "DDIM steps of the guard's samples.")
    guard_guidance: float = hfield(3.0, "Classifier-free guidance of the guard's samples.")
    guard_oracle: str | None = hfield(None, "Oracle folder: fidelity, held-out rater.")
    guard_clip: str | None = hfield(None, "CLIP folder: CLIP score and FID features.")
    guard_rater: str | None = hfield(None, "Held-out rater profile (YAML): win-rate.")
    guard_rater_seed: int = hfield(1000, "Seed of the held-out rater (new noise, same taste).")
    guard_reference: str | None = hfield(None, "Imagefolder of real images for the FID drift.")
    guard_n_reference: int = hfield(500, "Real images drawn from `reference`.")
    guard_patience: int = hfield(2, "Checks in a row of reward up / guard down before stopping.")
    guard_min_delta: float = hfield(0.02, "How far below its best the guard score must fall.")
    guard_stop_early: bool = hfield(True, "Stop the run when the guard trips (else only log it).")

    @property
    def guard_enabled(self) -> bool:
        return self.guard_every > 0 and self.guard_prompts is not None


@dataclass
class GuardReport:
    step: int
    train_reward: float
    metrics: dict[str, float]
    score: float
    is_best: bool
    stop: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_prompts(path: str | Path, n: int | None = None) -> list[str]:
    """Non-empty lines of a prompts file (the first `n`)."""
    p = Path(path)
    if not p.is_file():
        raise ArtalignError(f"prompts file {p} does not exist; pass a text file, one prompt a line")
    prompts = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ArtalignError(f"prompts file {p} is empty; write one prompt per line")
    return prompts[:n] if n else prompts


def load_reference(path: str | Path, n: int, size: int, seed: int = 0) -> torch.Tensor:
    """`n` real images of an imagefolder (a seeded draw), resized to `size`: (n, 3, S, S)."""
    # lazy: torchvision
    from base_models.data.loaders import load_records

    records = load_records(path, require_text=False)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(records), size=min(n, len(records)), replace=False)
    arrays = []
    for i in pick:
        im = records[int(i)].load_image().resize((size, size))
        arrays.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(arrays)


class Guard:
    """Held-out instruments measured on the current model against the base model."""

    def __init__(self, cfg: GuardConfig, generator: Any, reward_fn: Any = None) -> None:
        if not cfg.guard_enabled:
            raise ArtalignError("the guard is off; set guard_every > 0 and guard_prompts")
        if not (cfg.guard_oracle or cfg.guard_clip):
            raise ArtalignError("the guard needs an instrument; set guard_oracle and/or guard_clip")
        if cfg.guard_rater and not cfg.guard_oracle:
            raise ArtalignError("the held-out rater reads images with the oracle; set guard_oracle")
        self.cfg, self.generator, self.reward_fn = cfg, generator, reward_fn
        base_prompts = read_prompts(cfg.guard_prompts, cfg.guard_n_prompts)
        self.prompts = [p for p in base_prompts for _ in range(cfg.guard_seeds_per_prompt)]
        self.seeds = [90_000 + i for i in range(len(self.prompts))]
        self._load_instruments()
        with generator.lora_disabled():
            self.base = self._sample()
        self.base_metrics = self._measure(self.base, first=True)
        self.history: list[GuardReport] = []
        self.best_score: float | None = None  # guard score at the best check
        self.best_reward: float | None = None  # training reward at that check
        self.bad_checks = 0

    # --- instruments ----------------------------------------------------------------------
    def _load_instruments(self) -> None:
        cfg = self.cfg
        self.oracle = self.profile = self.clip_score = self.features = None
        if cfg.guard_oracle:
            self.oracle = AttributeOracle.load(cfg.guard_oracle)
        if cfg.guard_rater:
            profile = load_profile(cfg.guard_rater)
            self.profile = dataclasses.replace(profile, seed=cfg.guard_rater_seed)
        if cfg.guard_clip:
            # lazy: open_clip
            from base_models.clip.features import ClipImageFeatures

            self.clip_score = clip_score_fn(cfg.guard_clip)
            self.features = ClipImageFeatures.from_folder(cfg.guard_clip)
        self.reference = None
        if cfg.guard_reference:
            if not cfg.guard_clip:
                raise ArtalignError("the FID drift needs CLIP features; set guard_clip")
            size = self.generator.unet.config.sample_size * self.generator.vae_scale_factor
            self.reference = load_reference(cfg.guard_reference, cfg.guard_n_reference, size)

    def _sample(self) -> torch.Tensor:
        c = self.cfg
        out = self.generator.sample(
            self.prompts, self.seeds, steps=c.guard_steps, guidance=c.guard_guidance, batch_size=64
        )
        return out.pixels

    def _measure(self, pixels: torch.Tensor, first: bool = False) -> dict[str, float]:
        m: dict[str, float] = {}
        if self.oracle is not None:
            readings = read_images(self.oracle, pixels)
            pairs = zip(readings, self.prompts, strict=True)
            m["fidelity"] = float(np.mean([fidelity(r, parse_prompt(p))[0] for r, p in pairs]))
        if self.clip_score is not None:
            m["clip_score"] = float(self.clip_score(to_pil(pixels), self.prompts).mean())
            if not first:
                m["fid_to_base"] = clip_fid(self.features, self.base, pixels)
            if self.reference is not None:
                fid = clip_fid(self.features, self.reference, pixels)
                m["fid_to_reference"] = fid
                if not first:
                    base_fid = self.base_metrics["fid_to_reference"]
                    m["fid_drift"] = (fid - base_fid) / base_fid
        if self.profile is not None and not first:
            wr = rater_winrate(self.oracle, self.profile, pixels, self.base, self.prompts)
            m["rater_winrate"] = wr.value
        if self.reward_fn is not None and not first:
            with torch.no_grad():
                proxy = reward_winrate(self.reward_fn, pixels, self.base, self.prompts).value
            m["reward_winrate"] = proxy
            if "rater_winrate" in m:
                m["proxy_gap"] = proxy - m["rater_winrate"]
        return m

    @staticmethod
    def score(metrics: dict[str, float]) -> float:
        """fidelity + rater win-rate (whichever exist); the base scores its own win-rate, 0.5."""
        return metrics.get("fidelity", 0.0) + metrics.get("rater_winrate", 0.5)

    # --- checks ---------------------------------------------------------------------------
    def check(self, step: int, train_reward: float) -> GuardReport:
        """Sample the current model on the guard's prompts and compare with the base model."""
        t0 = time.perf_counter()
        metrics = self._measure(self._sample())
        score = self.score(metrics)
        is_best = self.best_score is None or score > self.best_score
        if is_best:
            self.best_score, self.best_reward = score, float(train_reward)
            self.bad_checks = 0
        elif train_reward > self.best_reward and score < self.best_score - self.cfg.guard_min_delta:
            self.bad_checks += 1
        else:
            self.bad_checks = 0
        stop = self.cfg.guard_stop_early and self.bad_checks >= self.cfg.guard_patience
        report = GuardReport(
            step, float(train_reward), metrics, score, is_best, stop, time.perf_counter() - t0
        )
        self.history.append(report)
        return report

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_reward": self.best_reward,
            "bad_checks": self.bad_checks,
            "history": [r.to_dict() for r in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state["best_score"]
        self.best_reward = state["best_reward"]
        self.bad_checks = state["bad_checks"]
        self.history = [GuardReport(**r) for r in state["history"]]
