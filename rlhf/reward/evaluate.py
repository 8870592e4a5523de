"""Evaluate a reward model on held-out preferences, with its baselines and ceilings.

`evaluate_reward(model_dir, data)` scores the validation and test judgments with the reward
model, the zero-shot CLIP score of its backbone and seeded random scores (`baselines`), and
measures each through the same code (`metrics`): pairwise accuracy with ties as half credit and
a tie threshold tuned on validation (PickScore protocol), ECE of P(A > B) = sigmoid(s_a - s_b),
and the Spearman correlation of scores with human ranks on k-way rankings; accuracies carry
bootstrap 95% CIs over prompts. Ceilings of the same test data: how well one rater predicts
another where 2+ raters judged the same images (human agreement, not an upper bound), and, given
the simulated raters' profile and the oracle, the analytic ceilings of
`base_models.rater_ceiling` with each scorer's expected accuracy under that profile (no
label-sampling noise): `accuracy`, the best expected credit of any prediction under the tie rule
(a true upper bound; a perfect model may predict a tie), and `accuracy_no_ties`, the bound for a
model that never predicts one.
`ratios` sets the reward model against the baselines and ceilings, each ceiling ratio also
chance-corrected: (model - random) / (ceiling - random), with the random scorer's accuracy on
the same pairs under the same rule.

Which judgments are held out: the model folder's split.json (written by `train_reward`) names
its validation and test prompts; judgments of prompts the model never saw count as test too;
judgments of its training prompts are never scored. Without validation judgments a fifth of the
test prompts is set aside to tune tau. Judgments of the raters the model's training left out
(flagged on its training prompts, `train_reward`) are not scored either.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from base_models.rater_ceiling import perfect_credit
from rlhf.reward.baselines import (
    ScoreFn,
    answer_probabilities,
    clip_score_fn,
    expected_credit,
    oracle_utilities,
    random_score_fn,
)
from rlhf.reward.data import PreferenceData, RaterPolicy, split_by_prompt
from rlhf.reward.metrics import (
    bootstrap_ci,
    chance_corrected,
    pairwise_report,
    ranking_spearman,
    rater_ceiling,
)
from rlhf.reward.model import load_reward_model, read_reward_config

Log = Callable[[str], None]


@dataclass
class PairTable:
    """Every pair of a split (its pairs, then each ranking's implied pairs i < j), flat.

    task: (kind, index into data.pairs or data.rankings) of the judgment each pair comes from.
    """

    prompt: list[str] = field(default_factory=list)
    a: list[int] = field(default_factory=list)
    b: list[int] = field(default_factory=list)
    p_a: list[float] = field(default_factory=list)
    rater: list[str | None] = field(default_factory=list)
    task: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def of(cls, data: PreferenceData) -> PairTable:
        t = cls()
        rows = [
            (p.prompt, p.image_a, p.image_b, p.p_a, p.rater, ("pair", n))
            for n, p in enumerate(data.pairs)
        ]
        for n, r in enumerate(data.rankings):
            for i in range(len(r.images)):
                for j in range(i + 1, len(r.images)):
                    p_a = (
                        1.0 if r.ranks[i] < r.ranks[j] else 0.0 if r.ranks[i] > r.ranks[j] else 0.5
                    )
                    rows.append((r.prompt, r.images[i], r.images[j], p_a, r.rater, ("rank", n)))
        for row in rows:
            for name, value in zip(("prompt", "a", "b", "p_a", "rater", "task"), row, strict=True):
                getattr(t, name).append(value)
        return t

    def __len__(self) -> int:
        return len(self.p_a)


def held_out_splits(
    data: PreferenceData, split: dict[str, Any] | None, seed: int = 0
) -> tuple[PreferenceData, PreferenceData, dict[str, Any]]:
    """(val, test, notes): the judgments to tune tau on and to measure on (see module doc)."""
    prompts = set(data.prompts())
    train_p = set(split.get("train_prompts", [])) if split else set()
    val_p = set(split.get("val_prompts", [])) if split else set()
    test_p = (prompts - train_p - val_p) if split else prompts
    val, test = data.subset(prompts & val_p), data.subset(test_p)
    notes = {
        "split_file": bool(split),
        "n_train_prompts_left_out": len(prompts & train_p),
        "val_from": "split.json",
    }
    if len(val) == 0 and len(test.prompts()) >= 3:
        val, _, test = split_by_prompt(test, val=0.0, test=0.8, seed=seed)  # "train": 20%
        notes["val_from"] = "a fifth of the test prompts"
    elif len(val) == 0:
        notes["val_from"] = "none (tau = 0)"
    notes.update(n_val_prompts=len(val.prompts()), n_test_prompts=len(test.prompts()))
    if len(test) == 0:
        raise ArtalignError(
            "no held-out judgments: every prompt of the data was used to train the model; "
            "evaluate on the data it was trained on (its test split) or on new prompts"
        )
    return val, test, notes


class ScoreCache:
    """Scores of (image index, prompt) items by one scoring function, each computed once."""

    def __init__(self, data: PreferenceData, score_fn: ScoreFn, batch_size: int = 256) -> None:
        self.data, self.score_fn, self.batch_size = data, score_fn, batch_size
        self.values: dict[tuple[int, str], float] = {}

    def fill(self, items: Sequence[tuple[int, str]]) -> None:
        todo = list(dict.fromkeys(i for i in items if i not in self.values))
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s : s + self.batch_size]
            images = [self.data.load_image(i) for i, _ in chunk]
            scores = self.score_fn(images, [p for _, p in chunk])
            for key, v in zip(chunk, scores.reshape(-1).tolist(), strict=True):
                self.values[key] = float(v)

    def diffs(self, t: PairTable) -> np.ndarray:
        self.fill(
            [(i, p) for i, p in zip(t.a, t.prompt, strict=True)]
            + [(i, p) for i, p in zip(t.b, t.prompt, strict=True)]
        )
        return np.array(
            [
                self.values[(a, p)] - self.values[(b, p)]
                for a, b, p in zip(t.a, t.b, t.prompt, strict=True)
            ]
        )


def _spearman(cache: ScoreCache, test: PreferenceData) -> dict[str, Any]:
    items = [(i, r.prompt) for r in test.rankings for i in r.images]
    cache.fill(items)
    scores = [[cache.values[(i, r.prompt)] for i in r.images] for r in test.rankings]
    return ranking_spearman(scores, [list(r.ranks) for r in test.rankings])


def judgment_records(data: PreferenceData) -> list[dict[str, Any]]:
    """The judgments as records for `metrics.rater_ceiling`: a task per (prompt, image set)."""
    tasks: dict[tuple, int] = {}
    records: list[dict[str, Any]] = []
    for p in data.pairs:
        if p.rater is None:
            continue
        lo, hi = sorted((p.image_a, p.image_b))
        p_lo = p.p_a if p.image_a == lo else 1.0 - p.p_a
        choice = "left" if p_lo == 1.0 else "right" if p_lo == 0.0 else "tie"
        task = tasks.setdefault(("pair", p.prompt, lo, hi), len(tasks))
        records.append(
            {
                "id": len(records),
                "task_id": task,
                "rater_id": p.rater,
                "kind": "pair",
                "prompt": p.prompt,
                "answer": {"choice": choice},
            }
        )
    for r in data.rankings:
        if r.rater is None:
            continue
        order = sorted(range(len(r.images)), key=lambda i: r.images[i])
        task = tasks.setdefault(("rank", r.prompt, *(r.images[i] for i in order)), len(tasks))
        records.append(
            {
                "id": len(records),
                "task_id": task,
                "rater_id": r.rater,
                "kind": "rank",
                "prompt": r.prompt,
                "answer": {"ranks": [r.ranks[i] for i in order]},
            }
        )
    return records


@dataclass
class SimulatedRaters:
    """What the analytic ceiling needs: the raters' profile, the oracle, known spammers."""

    profile: Any
    oracle: Any
    spammers: frozenset[str] = frozenset()


def answer_table(test: PreferenceData, t: PairTable, sim: SimulatedRaters) -> np.ndarray:
    """(n_pairs, 5): q_a, q_b, q_tie of each pair's rater, and the utilities u_a, u_b."""
    honest = dataclasses.replace(sim.profile, spammer_share=0.0) if sim.spammers else sim.profile
    items = sorted({(i, p) for i, p in zip(t.a + t.b, t.prompt + t.prompt, strict=True)})
    u = oracle_utilities(
        sim.oracle, sim.profile, [test.load_image(i) for i, _ in items], [p for _, p in items]
    )
    util = dict(zip(items, u.tolist(), strict=True))
    by_task: dict[tuple[str, int], np.ndarray] = {}
    for kind, n in dict.fromkeys(t.task):
        j = test.pairs[n] if kind == "pair" else test.rankings[n]
        ids = (j.image_a, j.image_b) if kind == "pair" else j.images
        by_task[(kind, n)] = answer_probabilities(
            honest, kind, [util[(i, j.prompt)] for i in ids], j.rater in sim.spammers
        )
    seen: dict[tuple[str, int], int] = {}
    rows = []
    for a, b, p, task in zip(t.a, t.b, t.prompt, t.task, strict=True):
        k = seen.get(task, 0)
        seen[task] = k + 1
        rows.append([*by_task[task][k], util[(a, p)], util[(b, p)]])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _mean_ci(values: np.ndarray, groups: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    ci = bootstrap_ci(values, groups, n_boot=n_boot, seed=seed)
    return {
        "accuracy": float(values.mean()),
        "ci95": list(ci) if ci else None,
        "n": int(values.size),
    }


def load_split(model_dir: str | Path) -> dict[str, Any] | None:
    """The split.json a trained model folder holds (its train / val / test prompts), or None."""
    path = Path(model_dir) / "split.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtalignError(f"{path} is not valid JSON ({e}); retrain or delete it") from None


def evaluate_scorers(
    scorers: dict[str, ScoreFn],
    val: PreferenceData,
    test: PreferenceData,
    sim: SimulatedRaters | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 256,
    log: Log | None = None,
) -> dict[str, Any]:
    """Metrics of each scoring function on (val, test), and the ceilings of `test`."""
    log = log or (lambda _m: None)
    tv, tt = PairTable.of(val), PairTable.of(test)
    if len(tt) == 0:
        raise ArtalignError("the held-out data holds no pairs to score")
    q = answer_table(test, tt, sim) if sim is not None else None
    results: dict[str, Any] = {}
    for name, fn in scorers.items():
        t0 = time.perf_counter()
        cache = ScoreCache(test, fn, batch_size)  # val and test share one image table
        d_val, d_test = cache.diffs(tv), cache.diffs(tt)
        report = pairwise_report(
            (d_val, tv.p_a, tv.prompt), (d_test, tt.p_a, tt.prompt), n_boot=n_boot, seed=seed
        )
        report["spearman"] = _spearman(cache, test)
        if q is not None:
            exp = expected_credit(q[:, :3], d_test, report["tau"])
            report["expected_accuracy"] = float(exp.mean())
            report["expected_accuracy_no_ties"] = float(expected_credit(q[:, :3], d_test).mean())
        report["seconds"] = time.perf_counter() - t0
        results[name] = report
        log(
            f"{name}: accuracy {report['accuracy']:.4f} on {report['n']} pairs "
            f"({report['seconds']:.1f}s)"
        )
    ceiling: dict[str, Any] = {"raters": rater_ceiling(judgment_records(test), n_boot, seed)}
    if q is not None:
        bound = _mean_ci(perfect_credit(q[:, :3]), tt.prompt, n_boot, seed)
        no_ties = _mean_ci(perfect_credit(q[:, :3], ties=False), tt.prompt, n_boot, seed)
        ceiling["analytic"] = {
            **bound,
            "accuracy_no_ties": no_ties["accuracy"],
            "ci95_no_ties": no_ties["ci95"],
            "profile": sim.profile.name,
            "known_spammers": sorted(sim.spammers),
        }
    return {"scorers": results, "ceiling": ceiling}


def ratios(
    result: dict[str, Any], model: str = "reward_model", random: str = "random"
) -> dict[str, float | None]:
    """The reward model's accuracy over each baseline's and each ceiling's.

    Against a ceiling also chance-corrected, (model - random) / (ceiling - random), with the
    `random` scorer's figure of the same kind (None without a random scorer). Sampled-label
    accuracy is set against the rater ceiling; expected accuracy (at the tuned tau) against the
    analytic bound, and expected accuracy without predicted ties against the no-ties bound.
    """
    scorers = result["scorers"]
    mine, rnd = scorers.get(model, {}), scorers.get(random, {})

    def ratio(x: float | None, y: float | None) -> float | None:
        return None if x is None or not y else x / y

    out = {
        f"vs_{k}": ratio(mine.get("accuracy"), v["accuracy"])
        for k, v in scorers.items()
        if k != model
    }
    # (the model's figure, the ratio's name, the ceiling of the same kind)
    pairs = [("accuracy", "vs_rater_ceiling", result["ceiling"]["raters"]["accuracy"])]
    if "analytic" in result["ceiling"]:
        analytic = result["ceiling"]["analytic"]
        pairs.append(("expected_accuracy", "expected_vs_analytic_ceiling", analytic["accuracy"]))
        no_ties = "expected_no_ties_vs_analytic_ceiling_no_ties"
        pairs.append(("expected_accuracy_no_ties", no_ties, analytic["accuracy_no_ties"]))
    for figure, name, ceiling in pairs:
        out[name] = ratio(mine.get(figure), ceiling)
        out[f"chance_corrected_{name}"] = chance_corrected(
            mine.get(figure), rnd.get(figure), ceiling
        )
    return out


def evaluate_reward(
    model_dir: str | Path,
    data: PreferenceData,
    out: str | Path | None = None,
    *,
    clip_baseline: bool = True,
    random_seed: int = 0,
    sim: SimulatedRaters | None = None,
    sim_metrics: dict[str, Any] | None = None,
    held_out: tuple[PreferenceData, PreferenceData] | None = None,
    drop_excluded_raters: bool = True,
    n_boot: int = 1000,
    batch_size: int = 256,
    log: Log | None = None,
) -> dict[str, Any]:
    """Evaluate the reward model in `model_dir` on `data`; write `out/metrics.json` if given.

    Scorers: "reward_model", "clip_score" (its backbone, zero-shot) and "random". `sim` adds the
    analytic ceiling and expected accuracies; `sim_metrics` (the JSON `label simulate` wrote) is
    copied in as the ceiling of the whole simulated run. `held_out` = (val, test) overrides the
    split read from the model folder (the learning curve measures every model on one test set).
    `drop_excluded_raters`: leave out the judgments of the raters the model's training left out
    (its reward_config's data.excluded_raters, flagged on the training prompts).
    """
    t0 = time.perf_counter()
    config = read_reward_config(model_dir)
    model = load_reward_model(model_dir)
    split = load_split(model_dir)
    seed = int((split or {}).get("seed", 0))
    if held_out is None:
        val, test, notes = held_out_splits(data, split, seed)
    else:
        val, test = held_out
        notes = {
            "split_file": False,
            "val_from": "given",
            "n_val_prompts": len(val.prompts()),
            "n_test_prompts": len(test.prompts()),
        }
    excluded = (config.get("data", {}).get("excluded_raters") or []) if drop_excluded_raters else []
    if excluded:
        val, test = (RaterPolicy(tuple(excluded)).apply(s) for s in (val, test))
    notes["excluded_raters"] = list(excluded)

    def reward(images: Sequence[Any], prompts: Sequence[str]) -> Any:
        return model.score(images, prompts, batch_size=batch_size)

    scorers: dict[str, ScoreFn] = {"reward_model": reward}
    if clip_baseline:
        bb = config["backbone"]
        scorers["clip_score"] = clip_score_fn(
            str(model.backbone.source["path"]), bb["kind"], bb.get("pretrained"), batch_size
        )
    scorers["random"] = random_score_fn(random_seed)
    result = evaluate_scorers(scorers, val, test, sim, n_boot, seed, batch_size, log)
    if sim_metrics is not None:
        result["ceiling"]["simulate_run"] = sim_metrics.get("ceiling")
    metrics = {
        "model": str(model_dir),
        "head": config["head"]["kind"],
        "mode": config["mode"],
        "data": {
            **{k: v for k, v in data.source.items() if k != "rater_weights"},
            "val": val.summary(),
            "test": test.summary(),
            **notes,
        },
        **result,
        "ratios": ratios(result),
        "protocol": (
            "pairwise accuracy, ties half credit, tie threshold tau tuned on val "
            "(PickScore); ECE: 10 equal-width bins of sigmoid(s_a - s_b); 95% CIs: "
            f"{n_boot} bootstrap draws over prompts"
        ),
        "seconds": time.perf_counter() - t0,
    }
    if out is not None:
        write_json(Path(out) / "metrics.json", metrics)
    return metrics
