"""16 raters judging in parallel (threads, and processes): nothing lost, nothing doubled,
no task served to two raters while it is locked.

Every rater has its own `Store`. Each judgment is next_task + submit, as the app does; every
10th is submitted twice with the same client token (a double click). The full issue size,
16 x 1,000 judgments, is marked slow (see the report of its run time); the same code runs
16 x 100 in the normal suite.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections import defaultdict

import pytest
from PIL import Image

from labeling_app.store import SYSTEM, Store

N_RATERS = 16
OVERLAP = 3


def make_work(db, n_per_rater: int) -> list[int]:
    """A store with N_RATERS raters and enough pair tasks (overlap 3) for all their work, with
    slack: near the end a slow rater must still find a task it has not judged whose slots are
    neither filled nor locked by a rater in flight."""
    store = Store(db, create=True)
    n_tasks = int(N_RATERS * n_per_rater / OVERLAP * 1.5) + 10
    with store.bulk():
        raters = [store.add_rater(f"r{i:02d}") for i in range(N_RATERS)]
        pid = store.add_prompt("a red circle")
        ims = [
            store.add_image(pid, Image.new("RGB", (4, 4), (40 * i, 0, 0)), seed=i, model="m")
            for i in range(4)
        ]
        bid = store.create_batch("load", {})
        for t in range(n_tasks):
            store.add_task(bid, "pair", pid, [ims[t % 4], ims[(t + 1) % 4]], overlap=OVERLAP)
    store.close()
    return raters


def rater_worker(db: str, rater_id: int, n: int) -> list[tuple]:
    """Judge n tasks; return (task, assignment, judgment, served_t, submit_t) per judgment."""
    store = Store(db)
    out = []
    try:
        for i in range(n):
            task = store.next_task(rater_id)
            served = time.time()
            assert task is not None, f"rater {rater_id} ran out of work after {i}"
            token = f"{rater_id}-{i}"
            answer = {"choice": ("left", "right", "tie", "both_bad")[i % 4]}
            submitted = time.time()
            jid = store.submit(task.assignment_id, rater_id, answer, client_token=token)
            if i % 10 == 0:  # a double click: same token, same id, one row
                assert store.submit(task.assignment_id, rater_id, answer, client_token=token) == jid
            out.append((task.task_id, task.assignment_id, jid, served, submitted))
    finally:
        store.close()
    return out


def check(db, raters: list[int], results: dict[int, list[tuple]], n: int) -> None:
    store = Store(db)
    judgments = store.judgments(SYSTEM)
    by_id = {j.id: j for j in judgments}
    # zero lost: every acknowledged id is stored, for the rater and task it was acknowledged for
    for rater_id, rows in results.items():
        assert len(rows) == n
        for task_id, _, jid, _, _ in rows:
            assert by_id[jid].rater_id == rater_id and by_id[jid].task_id == task_id
    # zero duplicated: exactly one row per acknowledgement, one per (task, rater)
    assert len(judgments) == N_RATERS * n
    pairs = [(j.task_id, j.rater_id) for j in judgments]
    assert len(set(pairs)) == len(pairs)
    per_task = defaultdict(int)
    for j in judgments:
        per_task[j.task_id] += 1
    assert max(per_task.values()) <= OVERLAP
    # never two raters on a locked task: the serving windows of one task never overlap,
    # neither as the client saw them nor as the database recorded them
    windows = defaultdict(list)
    for rows in results.values():
        for task_id, _, _, served, submitted in rows:
            windows[task_id].append((served, submitted))
    conn = sqlite3.connect(db)
    for task_id, served, finished in conn.execute(
        "SELECT task_id, served_at, finished_at FROM assignment"
    ):
        windows[-task_id].append((served, finished))
    conn.close()
    for spans in windows.values():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, "a task was served to two raters while locked"
    store.close()


def run_threads(db, n: int) -> float:
    raters = make_work(db, n)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(rater_id: int) -> None:
        try:
            results[rater_id] = rater_worker(str(db), rater_id, n)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert not errors, errors[0]
    check(db, raters, results, n)
    return elapsed


def run_processes(db, n: int) -> float:
    raters = make_work(db, n)
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ctx.Pool(N_RATERS) as pool:
        rows = pool.starmap(rater_worker, [(str(db), r, n) for r in raters])
    elapsed = time.perf_counter() - start
    check(db, raters, dict(zip(raters, rows, strict=True)), n)
    return elapsed


def test_16_threads_x_100(tmp_path):
    elapsed = run_threads(tmp_path / "c.db", 100)
    print(f"16 threads x 100 judgments: {elapsed:.1f} s")


def test_16_processes_x_100(tmp_path):
    elapsed = run_processes(tmp_path / "p.db", 100)
    print(f"16 processes x 100 judgments: {elapsed:.1f} s")


@pytest.mark.slow
def test_16_threads_x_1000(tmp_path):
    elapsed = run_threads(tmp_path / "c.db", 1000)
    print(f"16 threads x 1000 judgments: {elapsed:.1f} s")


@pytest.mark.slow
def test_16_processes_x_1000(tmp_path):
    elapsed = run_processes(tmp_path / "p.db", 1000)
    print(f"16 processes x 1000 judgments: {elapsed:.1f} s")
