"""The answer layouts of docs/labeling_store.md: validation, gold checks and implied pairs.

pair: {"choice": "left" | "right" | "tie" | "both_bad"}
rank: {"ranks": [r_0, ..., r_{k-1}]}  (1 = best, equal numbers are ties)
either may add "ratings": {"fidelity": 1-7, "quality": 1-7}, one number or one per image.
"""

from __future__ import annotations

from typing import Any

from labeling_app.store.records import StoreError

CHOICES = ("left", "right", "tie", "both_bad")
RATING_KEYS = ("fidelity", "quality")
RATING_RANGE = (1, 7)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_rating(key: str, value: Any) -> None:
    lo, hi = RATING_RANGE
    if value is None:
        return
    if not _is_int(value) or not lo <= value <= hi:
        raise StoreError(f"rating {key!r} must be an integer {lo}-{hi}, got {value!r}")


def _check_ratings(ratings: Any, n_images: int) -> None:
    if not isinstance(ratings, dict):
        raise StoreError(f"'ratings' must be an object like {{'fidelity': 5}}, got {ratings!r}")
    unknown = set(ratings) - set(RATING_KEYS)
    if unknown:
        raise StoreError(f"unknown rating {sorted(unknown)}; use {', '.join(RATING_KEYS)}")
    for key, value in ratings.items():
        if isinstance(value, list):
            if len(value) != n_images:
                raise StoreError(
                    f"rating {key!r} lists {len(value)} values for {n_images} images; "
                    "give one per image or a single number"
                )
            for v in value:
                _check_rating(key, v)
        else:
            _check_rating(key, value)


def validate_answer(kind: str, n_images: int, answer: Any) -> dict[str, Any]:
    """Return a clean copy of `answer` for a task of `kind` with `n_images`; StoreError if bad."""
    if not isinstance(answer, dict):
        raise StoreError(f"an answer must be an object, got {type(answer).__name__}")
    allowed = {"pair": {"choice", "ratings"}, "rank": {"ranks", "ratings"}}.get(kind)
    if allowed is None:
        raise StoreError(f"unknown task kind {kind!r}; use 'pair' or 'rank'")
    unknown = set(answer) - allowed
    if unknown:
        raise StoreError(f"unexpected keys {sorted(unknown)} in a {kind} answer")
    clean: dict[str, Any] = {}
    if kind == "pair":
        choice = answer.get("choice")
        if choice not in CHOICES:
            raise StoreError(f"a pair answer needs 'choice' in {CHOICES}, got {choice!r}")
        clean["choice"] = choice
    else:
        ranks = answer.get("ranks")
        if not isinstance(ranks, list) or len(ranks) != n_images:
            raise StoreError(
                f"a rank answer needs 'ranks': a list of {n_images} integers (1 = best), "
                f"got {ranks!r}"
            )
        if not all(_is_int(r) and 1 <= r <= n_images for r in ranks):
            raise StoreError(f"each rank must be an integer 1-{n_images}, got {ranks}")
        clean["ranks"] = list(ranks)
    if "ratings" in answer:
        _check_ratings(answer["ratings"], n_images)
        clean["ratings"] = {
            k: (list(v) if isinstance(v, list) else v) for k, v in answer["ratings"].items()
        }
    return clean


def order_of(ranks: list[int]) -> list[int]:
    """Competition ranks ("1224") of `ranks`: only the order matters, so [1,3,3,9] -> [1,2,2,4]."""
    return [1 + sum(other < r for other in ranks) for r in ranks]


def as_ranks(kind: str, answer: dict[str, Any]) -> list[int] | None:
    """The answer as ranks over the task's images; None for 'both_bad' (no preference stated)."""
    if kind == "rank":
        return order_of(answer["ranks"])
    return {"left": [1, 2], "right": [2, 1], "tie": [1, 1]}.get(answer["choice"])


def matches_gold(kind: str, answer: dict[str, Any], gold: dict[str, Any]) -> bool:
    """Pair: same choice. Rank: same order of the images (ties included)."""
    if kind == "pair":
        return answer.get("choice") == gold.get("choice")
    return order_of(answer["ranks"]) == order_of(gold["ranks"])


def implied_pairs(ranks: list[int]) -> list[tuple[int, int, float]]:
    """Every pair (i, j), i < j, with the label of i: 1 if better, 0 if worse, 0.5 if tied."""
    out = []
    for i in range(len(ranks)):
        for j in range(i + 1, len(ranks)):
            label = 1.0 if ranks[i] < ranks[j] else 0.0 if ranks[i] > ranks[j] else 0.5
            out.append((i, j, label))
    return out
