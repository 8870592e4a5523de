"""Preference data for reward models: pairs and rankings of images for a prompt.

`PreferenceData` holds a table of images (a path, or encoded bytes from a parquet file, decoded
lazily with PIL) and judgments that index it:
- `Pair(prompt, image_a, image_b, p_a, rater, weight)`: p_a = 1 (A preferred), 0 (B) or 0.5 (tie);
- `Ranking(prompt, images, ranks, rater, weight)`: ranks 1 = best, equal ranks are ties.
The loaders (rlhf/reward/loaders.py) read the label store (`load_from_store`), a Pick-a-Pic
parquet (`load_pickapic`) or ImageReward-style JSONL rankings (`load_rankings`), in the layouts
`labeling_app.exchange` writes; `load_preferences` picks one by the file. By default gold tasks
are left out and "both bad" answers dropped (or, with both_bad="tie", kept as ties).
`split_by_prompt` puts each prompt in one split only.

The rater policy: raters whom `labeling_app.agreement` flags as agreeing with nobody (every kappa
below `flag_kappa`, 0.2 as in `artalign label agreement`) are left out, and optional per-rater
weights are their mean Cohen's kappa with the others. Both are read off the labels, so they are
fitted on the training split only (`training_rater_policy(cfg, data, train)` or
`fit_rater_policy(train)`, then `.apply` to every split, as `train_reward` does); a loader asked
for a policy fits it on all it loads (`apply_rater_policy`), which is for data that is not split
afterwards.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from base_models.errors import ArtalignError
from labeling_app.agreement import agreement_report

BOTH_BAD = ("drop", "tie")


@dataclass(frozen=True)
class Pair:
    """One pairwise judgment: image indices into `PreferenceData.images`, p_a in {1, 0, 0.5}."""

    prompt: str
    image_a: int
    image_b: int
    p_a: float
    rater: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Ranking:
    """One k-way ranking: `ranks[i]` is the rank of `images[i]` (1 = best, ties equal)."""

    prompt: str
    images: tuple[int, ...]
    ranks: tuple[int, ...]
    rater: str | None = None
    weight: float = 1.0


def competition_ranks(ranks: Sequence[float]) -> tuple[int, ...]:
    """Only the order counts: [1, 3, 3, 9] -> (1, 2, 2, 4)."""
    return tuple(1 + sum(o < r for o in ranks) for r in ranks)


@dataclass
class PreferenceData:
    """Judgments over a shared image table; subsets share the table, so indices stay valid."""

    images: list[str | bytes] = field(default_factory=list)  # a path, or encoded image bytes
    names: list[str] = field(default_factory=list)  # how errors name each image
    pairs: list[Pair] = field(default_factory=list)
    rankings: list[Ranking] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)  # provenance, saved with the model

    def __len__(self) -> int:
        return len(self.pairs) + len(self.rankings)

    def load_image(self, index: int) -> Image.Image:
        """Image `index` as RGB; ArtalignError naming the file when it does not decode."""
        ref = self.images[index]
        try:
            with Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref) as im:
                return im.convert("RGB")
        except Exception as e:  # PIL raises many types for missing or broken files
            raise ArtalignError(
                f"image {self.names[index]} cannot be loaded ({type(e).__name__}: {e}); "
                "restore the file or drop its judgments"
            ) from None

    def prompts(self) -> list[str]:
        """The distinct prompts, sorted."""
        return sorted({p.prompt for p in self.pairs} | {r.prompt for r in self.rankings})

    def used_images(self) -> list[int]:
        """Indices of the images some judgment refers to, sorted."""
        used = {i for p in self.pairs for i in (p.image_a, p.image_b)}
        return sorted(used | {i for r in self.rankings for i in r.images})

    def with_judgments(
        self, pairs: Iterable[Pair], rankings: Iterable[Ranking], **notes: Any
    ) -> PreferenceData:
        """The same images with other judgments (and provenance notes added)."""
        return PreferenceData(
            self.images, self.names, list(pairs), list(rankings), {**self.source, **notes}
        )

    def subset(self, prompts: Iterable[str]) -> PreferenceData:
        """Only the judgments of `prompts`."""
        keep = set(prompts)
        return self.with_judgments(
            [p for p in self.pairs if p.prompt in keep],
            [r for r in self.rankings if r.prompt in keep],
        )

    def sample(self, fraction: float, seed: int = 0) -> PreferenceData:
        """A random `fraction` of the judgments (at least one), e.g. for learning curves."""
        if not 0.0 < fraction <= 1.0:
            raise ArtalignError(f"fraction must be in (0, 1], got {fraction}")
        items = [("p", i) for i in range(len(self.pairs))]
        items += [("r", i) for i in range(len(self.rankings))]
        n = max(1, round(fraction * len(items))) if items else 0
        chosen = sorted(random.Random(seed).sample(items, n))
        return self.with_judgments(
            [self.pairs[i] for k, i in chosen if k == "p"],
            [self.rankings[i] for k, i in chosen if k == "r"],
        )

    def all_pairs(self) -> list[Pair]:
        """The pairs plus every ranking's implied pairs (label 1 / 0 / 0.5 for a tie)."""
        out = list(self.pairs)
        for r in self.rankings:
            for i in range(len(r.images)):
                for j in range(i + 1, len(r.images)):
                    a, b = r.ranks[i], r.ranks[j]
                    p = 1.0 if a < b else 0.0 if a > b else 0.5
                    out.append(Pair(r.prompt, r.images[i], r.images[j], p, r.rater, r.weight))
        return out

    def check(self) -> None:
        """ArtalignError for data a reward model cannot learn from: empty, or only ties."""
        where = self.source.get("path", "the data")
        if len(self) == 0:
            raise ArtalignError(
                f"no usable judgments in {where} (after leaving out gold tasks, both-bad answers "
                "and flagged raters); label some images first"
            )
        if all(p.p_a == 0.5 for p in self.pairs) and all(
            len(set(r.ranks)) == 1 for r in self.rankings
        ):
            raise ArtalignError(
                f"every judgment in {where} is a tie: there is no preference to learn; "
                "collect judgments that pick a winner"
            )

    def summary(self) -> dict[str, Any]:
        """Counts for logs and metrics."""
        return {
            "pairs": len(self.pairs),
            "rankings": len(self.rankings),
            "implied_pairs": len(self.all_pairs()),
            "prompts": len(self.prompts()),
            "images": len(self.used_images()),
            "raters": len({j.rater for j in [*self.pairs, *self.rankings]}),
        }


# ----------------------------------------------------------------------------- rater policy
def _agreement_records(data: PreferenceData) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The judgments as `labeling_app.agreement` records, a unit per (prompt, image set)."""
    units: dict[tuple, int] = {}
    raters = sorted({j.rater for j in [*data.pairs, *data.rankings] if j.rater is not None})
    rid = {name: i + 1 for i, name in enumerate(raters)}
    records = []
    for n, p in enumerate(data.pairs):
        if p.rater is None:
            continue
        lo_first = p.image_a <= p.image_b
        key = ("pair", p.prompt, *sorted((p.image_a, p.image_b)))
        p_lo = p.p_a if lo_first else 1.0 - p.p_a
        choice = "left" if p_lo == 1.0 else "right" if p_lo == 0.0 else "tie"
        records.append(
            {
                "id": n,
                "task_id": units.setdefault(key, len(units)),
                "kind": "pair",
                "rater_id": rid[p.rater],
                "answer": {"choice": choice},
                "seconds": None,
            }
        )
    for n, r in enumerate(data.rankings, len(data.pairs)):
        if r.rater is None:
            continue
        order = sorted(range(len(r.images)), key=lambda i: r.images[i])
        key = ("rank", r.prompt, *(r.images[i] for i in order))
        records.append(
            {
                "id": n,
                "task_id": units.setdefault(key, len(units)),
                "kind": "rank",
                "rater_id": rid[r.rater],
                "answer": {"ranks": [r.ranks[i] for i in order]},
                "seconds": None,
            }
        )
    return records, {i: name for name, i in rid.items()}


@dataclass(frozen=True)
class RaterPolicy:
    """Raters to leave out and weights of the others (`fit_rater_policy`), to apply to any split.

    fit_prompts: how many prompts the kappa flags and weights were computed from (None when
    nothing was computed from judgments: no flags asked, no weights).
    """

    excluded: tuple[str, ...] = ()
    weights: dict[str, float] = field(default_factory=dict)
    fit_prompts: int | None = None

    def apply(self, data: PreferenceData) -> PreferenceData:
        """`data` without the excluded raters' judgments, the others' weights multiplied.

        Provenance notes: excluded_raters (with any left out before), rater_weights and
        rater_policy_fit_prompts.
        """
        excluded = set(self.excluded)
        w = self.weights

        def weigh(j: Any) -> Any:
            return replace(j, weight=j.weight * w[j.rater]) if j.rater in w else j

        before = data.source.get("excluded_raters") or []
        return data.with_judgments(
            [weigh(p) for p in data.pairs if p.rater not in excluded],
            [weigh(r) for r in data.rankings if r.rater not in excluded],
            excluded_raters=sorted(excluded | set(before)),
            rater_weights=w or None,
            rater_policy_fit_prompts=self.fit_prompts,
        )


def fit_rater_policy(
    data: PreferenceData,
    exclude_raters: str | Sequence[str] | None = "flagged",
    rater_weights: bool = False,
    min_shared: int = 10,
    kappa_threshold: float = 0.2,
) -> RaterPolicy:
    """The rater policy computed from `data`'s judgments: pass the training split only.

    exclude_raters: "flagged" (raters `labeling_app.agreement.flag_raters` finds agreeing with
    nobody), a list of rater names, or None. rater_weights: each rater's weight is their mean
    Cohen's kappa with the raters they share >= `min_shared` units with, clipped to
    [0.05, 1]; raters with no such partner weigh 1. Fitted on judgments that are later scored
    (validation or test prompts), the flags and weights would leak their labels into training.
    """
    if isinstance(exclude_raters, str) and exclude_raters != "flagged":
        raise ArtalignError(f"exclude_raters={exclude_raters!r}: use 'flagged', a list or None")
    if exclude_raters != "flagged" and not rater_weights:
        return RaterPolicy(tuple(sorted({str(r) for r in exclude_raters or ()})))

    records, names = _agreement_records(data)
    report = agreement_report(records, min_shared=min_shared, kappa_threshold=kappa_threshold)
    if exclude_raters == "flagged":
        excluded = sorted(names[i] for i in report.flagged)
    else:
        excluded = sorted({str(r) for r in exclude_raters or ()})
    weights: dict[str, float] = {}
    if rater_weights:
        kappas: dict[str, list[float]] = defaultdict(list)
        for (a, b), (k, shared) in report.kappa.items():
            if k is not None and shared >= min_shared:
                kappas[names[a]].append(k)
                kappas[names[b]].append(k)
        weights = {name: min(1.0, max(0.05, sum(ks) / len(ks))) for name, ks in kappas.items()}
    return RaterPolicy(tuple(excluded), weights, len(data.prompts()))


def apply_rater_policy(
    data: PreferenceData,
    exclude_raters: str | Sequence[str] | None = "flagged",
    rater_weights: bool = False,
    min_shared: int = 10,
    kappa_threshold: float = 0.2,
) -> PreferenceData:
    """`fit_rater_policy` on all of `data`, applied to it: only for data that is not split into
    held-out parts afterwards (training fits the policy on its training split)."""
    return fit_rater_policy(data, exclude_raters, rater_weights, min_shared, kappa_threshold).apply(
        data
    )


def training_rater_policy(
    cfg: Any, data: PreferenceData, train: PreferenceData, log: Callable[[str], None] | None = None
) -> RaterPolicy | None:
    """A config's rater policy fitted on the training split only; None when it asks for none.

    `cfg` has exclude_flagged, rater_weights and flag_kappa (RewardConfig, DPOConfig). Flags
    and weights fitted on all the data would let the held-out labels decide whose judgments the
    model learns from. Data already put through a fitted policy (a loader given
    exclude_raters="flagged" or rater_weights=True) is refused: its flags saw every prompt.
    """
    if not (cfg.exclude_flagged or cfg.rater_weights):
        return None
    if data.source.get("rater_policy_fit_prompts"):
        raise ArtalignError(
            f"{data.source.get('path', 'the data')} was loaded with a rater policy fitted on all "
            "its prompts; load it with exclude_raters=None and rater_weights=False: training "
            "fits the policy (exclude_flagged, rater_weights) on its training prompts"
        )
    policy = fit_rater_policy(
        train,
        "flagged" if cfg.exclude_flagged else None,
        cfg.rater_weights,
        kappa_threshold=cfg.flag_kappa,
    )
    if policy.excluded and log is not None:
        log(
            f"left out raters who agree with nobody on the training prompts: "
            f"{', '.join(policy.excluded)}"
        )
    return policy


def split_by_prompt(
    data: PreferenceData, val: float = 0.1, test: float = 0.2, seed: int = 0
) -> tuple[PreferenceData, PreferenceData, PreferenceData]:
    """(train, val, test) with every prompt in exactly one split.

    Prompts are ordered by a hash of (seed, prompt), so the split depends only on the prompt
    texts and the seed, not on the order judgments were loaded in. A split with a non-zero
    share gets at least one prompt when there are enough prompts to keep one for training.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise ArtalignError(f"split shares val={val}, test={test} must be >= 0 and sum below 1")
    prompts = sorted(
        data.prompts(), key=lambda p: hashlib.sha256(f"{seed}\0{p}".encode()).hexdigest()
    )
    n = len(prompts)
    n_test = round(test * n) if test == 0 or n < 3 else max(1, round(test * n))
    n_val = round(val * n) if val == 0 or n < 3 else max(1, round(val * n))
    if n - n_test - n_val < 1:
        raise ArtalignError(
            f"{n} prompt(s) cannot be split into train/val/test; label more "
            "prompts or lower the val / test shares"
        )
    test_p, val_p = prompts[:n_test], prompts[n_test : n_test + n_val]
    train_p = prompts[n_test + n_val :]
    return data.subset(train_p), data.subset(val_p), data.subset(test_p)
