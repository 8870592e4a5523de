"""The preference store: SQLite (WAL) and image files named by hash (docs/labeling_store.md)."""

from labeling_app.store.answers import CHOICES, implied_pairs, matches_gold, validate_answer
from labeling_app.store.records import (
    SYSTEM,
    AuthError,
    Batch,
    ImageRecord,
    Judgment,
    Rater,
    StoreError,
    Task,
)
from labeling_app.store.store import Store

__all__ = [
    "CHOICES",
    "SYSTEM",
    "AuthError",
    "Batch",
    "ImageRecord",
    "Judgment",
    "Rater",
    "Store",
    "StoreError",
    "Task",
    "implied_pairs",
    "matches_gold",
    "validate_answer",
]
