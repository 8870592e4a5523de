"""Crash test: SIGKILL a process mid-session; every judgment it acknowledged is in the store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from labeling_app.store import SYSTEM, Store

# The child judges tasks until killed and prints "judgment_id task_id" after each submit
# returns, i.e. after its commit: what a browser would have been told.
CHILD = """
import sys
from labeling_app.store import Store

store = Store(sys.argv[1])
rater = int(sys.argv[2])
i = 0
while True:
    task = store.next_task(rater)
    if task is None:
        break
    jid = store.submit(task.assignment_id, rater, {"choice": "left"}, client_token=f"c{i}")
    print(jid, task.task_id, flush=True)
    i += 1
"""


def test_acknowledged_judgments_survive_sigkill(tmp_path):
    db = tmp_path / "crash.db"
    store = Store(db, create=True)
    with store.bulk():
        rater = store.add_rater("r")
        pid = store.add_prompt("p")
        ims = [
            store.add_image(pid, Image.new("RGB", (4, 4), (i, 0, 0)), seed=i, model="m")
            for i in range(2)
        ]
        bid = store.create_batch("b", {})
        for _ in range(5000):
            store.add_task(bid, "pair", pid, ims)
    store.close()
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(rater)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked = []
    deadline = time.time() + 60
    while len(acked) < 60 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(tuple(map(int, line.split())))
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: it is inside a next_task or submit right now
    rest = proc.stdout.read()  # lines printed before the kill are acknowledgements too
    proc.wait()
    acked += [tuple(map(int, line.split())) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL
    assert len(acked) >= 60, "the child did not get going"

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = Store(db)
    stored = {j.id: j.task_id for j in store.judgments(SYSTEM)}
    for jid, task_id in acked:
        assert stored.get(jid) == task_id, f"acknowledged judgment {jid} was lost"
    assert len(stored) >= len(acked)  # at most the one in flight was committed unprinted
    assert len(stored) <= len(acked) + 1
    # the store still works after the crash
    task = store.next_task(rater)
    store.submit(task.assignment_id, rater, {"choice": "tie"}, client_token="after")
    store.close()
