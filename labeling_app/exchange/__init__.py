"""Export and import preference data: Pick-a-Pic parquet and ImageReward-style JSONL rankings.

pickapic.py and rankings.py each hold one format: its export, its single reader into checked
records (also used by `rlhf.reward.loaders`) and its import into the store; common.py holds what
they share (`Importer`, `ExportSummary`, `ImportSummary`, time and image helpers). Exports are
written atomically and hold live (not undone) judgments, gold tasks only on request; the
Pick-a-Pic export leaves "both bad" answers out unless asked to keep them. An import makes one
new batch: a task per distinct (prompt, images) with overlap = the number of its raters, raters
named by `rater_name` (or `user_id`), and the judgments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from base_models.errors import ArtalignError
from labeling_app.exchange.common import ExportSummary, ImportSummary
from labeling_app.exchange.pickapic import export_pickapic, import_pickapic
from labeling_app.exchange.rankings import export_rankings, import_rankings
from labeling_app.store import Store

FORMATS = ("pickapic", "rankings")


def export_labels(
    store: Store,
    out: str | Path,
    fmt: str = "pickapic",
    keep_both_bad: bool = False,
    **kwargs: Any,
) -> ExportSummary:
    """Export in `fmt` (pickapic | rankings); return the rows or lines written.

    `keep_both_bad` keeps "both bad" answers in a Pick-a-Pic export (left out by default, as
    label-only loaders would read them as ties); JSONL rankings always keep them, flagged.
    """
    if fmt not in FORMATS:
        raise ArtalignError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    if fmt == "pickapic":
        return export_pickapic(store, out, keep_both_bad=keep_both_bad, **kwargs)
    return export_rankings(store, out, **kwargs)


def import_labels(
    store: Store, path: str | Path, fmt: str = "pickapic", batch_name: str | None = None
) -> ImportSummary:
    """Import a file in `fmt` (pickapic | rankings) into a new batch."""
    if fmt not in FORMATS:
        raise ArtalignError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    return (import_pickapic if fmt == "pickapic" else import_rankings)(store, path, batch_name)
