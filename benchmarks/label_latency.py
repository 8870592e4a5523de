"""Labeling latency benchmark (issue 4): server time per judgment with 100k judgments stored.

    python benchmarks/label_latency.py [--judgments 100000] [--measure 500] [--out DIR]

1. fill a fresh store: 50 raters, pair tasks with overlap 3, and `--judgments` judgments
   written through `Store.record_judgment` inside one `bulk()` transaction (the fast path);
   the fill leaves a band of half-done tasks, so serving has to skip tasks a rater has seen;
2. measure what the app does per judgment, one call after the other as a browser would:
   `next_task` + `submit` (each its own durable transaction), for `--measure` judgments by
   rotating raters, in FIFO order and in "uncertain" order with 10% gold, interleaved with
   3. the baseline: a bare one-row INSERT + COMMIT into an empty SQLite table with the same
   pragmas (WAL, synchronous=FULL) on the same disk, so that both see the same fsync times;
   and the `progress` call the app makes on every page.
Prints p50 / p95 / p99 in ms and the ratio to the baseline; target: p95 <= 50 ms.
With --out, writes DIR/metrics.json.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base_models.io_utils import write_json  # noqa: E402
from labeling_app.store import SYSTEM, Store  # noqa: E402
from labeling_app.store.schema import PRAGMAS  # noqa: E402

N_RATERS, OVERLAP = 50, 3


def fill(db: Path, n_judgments: int, seed: int = 0) -> tuple[Store, list[int]]:
    """A store holding `n_judgments` judgments; returns it and the rater ids."""
    rng = random.Random(seed)
    store = Store(db, create=True)
    n_tasks = n_judgments // 2 + 5000  # 2 judgments on every task, a third on part of them
    with store.bulk():
        raters = [store.add_rater(f"rater{i:02d}") for i in range(N_RATERS)]
        prompts = [store.add_prompt(f"prompt {i}") for i in range(200)]
        images = {
            p: [
                store.add_image(p, Image.new("RGB", (8, 8), (i, p % 256, 0)), seed=i, model="bench")
                for i in range(4)
            ]
            for p in prompts
        }
        bid = store.create_batch("bench", {})
        tasks = []
        for t in range(n_tasks):
            p = prompts[t % len(prompts)]
            a, b = rng.sample(images[p], 2)
            tasks.append(store.add_task(bid, "pair", p, [a, b], overlap=OVERLAP))
        gold = store.create_batch("bench-gold", {})
        for t in range(500):
            p = prompts[t % len(prompts)]
            store.add_task(gold, "pair", p, images[p][:2], gold={"choice": "left"})
    made = 0
    for rounds in (2, 1):  # two judgments on every task, then a third on the first ones
        for start in range(0, len(tasks), 5000):
            with store.bulk():
                for task_id in tasks[start : start + 5000]:
                    if made == n_judgments:
                        break
                    who = rng.sample(raters, 3)
                    for r in who[:rounds] if rounds == 2 else who[2:]:
                        store.record_judgment(
                            task_id,
                            r,
                            {"choice": rng.choice(("left", "right"))},
                            client_token=f"fill-{made}",
                        )
                        made += 1
                        if made == n_judgments:
                            break
    return store, raters


def one_judgment(store: Store, rater: int, token: str, **serve) -> float:
    """ms for one judgment: next_task + submit, as the app calls them."""
    t0 = time.perf_counter()
    task = store.next_task(rater, **serve)
    store.submit(task.assignment_id, rater, {"choice": "left"}, client_token=token)
    return 1000 * (time.perf_counter() - t0)


class Baseline:
    """A bare one-row INSERT + COMMIT into an empty table with the store's pragmas."""

    def __init__(self, folder: Path) -> None:
        self.conn = sqlite3.connect(folder / "baseline.db", isolation_level=None)
        for pragma in PRAGMAS:
            self.conn.execute(pragma)
        self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, answer TEXT, created_at REAL)")

    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(
            "INSERT INTO t (answer, created_at) VALUES (?, ?)", ('{"choice": "left"}', time.time())
        )
        self.conn.execute("COMMIT")
        return 1000 * (time.perf_counter() - t0)


def measure(store: Store, raters: list[int], folder: Path, n: int) -> dict[str, list[float]]:
    """Interleaved, so that the baseline and the store see the same disk at the same time."""
    baseline = Baseline(folder)
    rows: dict[str, list[float]] = {k: [] for k in ROWS}
    for i in range(n):
        rater = raters[i % len(raters)]
        rows[ROWS[0]].append(baseline())
        rows[ROWS[1]].append(one_judgment(store, rater, f"fifo-{i}"))
        rows[ROWS[2]].append(
            one_judgment(store, rater, f"unc-{i}", order="uncertain", gold_rate=0.1)
        )
    baseline.conn.close()
    return rows


ROWS = (
    "baseline: INSERT + COMMIT",
    "judgment: next_task + submit (fifo)",
    "judgment: uncertain order, 10% gold",
)


def measure_progress(store: Store, raters: list[int], n: int) -> list[float]:
    out = []
    for i in range(n):
        viewer = store.rater(raters[i % len(raters)]) if i % 2 else SYSTEM
        t0 = time.perf_counter()
        store.progress(viewer)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--judgments", type=int, default=100_000)
    p.add_argument("--measure", type=int, default=500)
    p.add_argument("--db-dir", type=Path, default=None, help="where the stores go (default: tmp)")
    p.add_argument("--out", type=Path, default=None, help="folder for metrics.json")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.db_dir) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        store, raters = fill(folder / "labels.db", a.judgments)
        fill_s = time.perf_counter() - t0
        stored = len(store.judgments(SYSTEM, include_gold=True))
        rows = measure(store, raters, folder, a.measure)
        rows["progress (admin / rater)"] = measure_progress(store, raters, 100)
        store.close()
    base = {q: pct(rows[ROWS[0]], q) for q in (50, 95)}
    print(
        f"\nlabel store latency: {stored} judgments stored (fill {fill_s:.0f} s), "
        f"{a.measure} measured per row\n"
    )
    print(
        f"{'operation':<40} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'p50/base':>9} "
        f"{'p95/base':>9}"
    )
    metrics: dict[str, dict[str, float]] = {}
    for name, xs in rows.items():
        m = {"p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99)}
        ratio = {f"ratio_p{q}": m[f"p{q}"] / base[q] for q in (50, 95)}
        metrics[name] = {**m, **ratio}
        print(
            f"{name:<40} {m['p50']:>8.2f} {m['p95']:>8.2f} {m['p99']:>8.2f} "
            f"{ratio['ratio_p50']:>8.1f}x {ratio['ratio_p95']:>8.1f}x"
        )
    p95 = metrics[ROWS[1]]["p95"]
    print(f"\ntarget p95 <= 50 ms per judgment: {'met' if p95 <= 50 else 'NOT met'} ({p95:.1f} ms)")
    if a.out:
        write_json(
            a.out / "metrics.json",
            {"stored_judgments": stored, "fill_seconds": fill_s, "latency_ms": metrics},
        )


if __name__ == "__main__":
    main()
