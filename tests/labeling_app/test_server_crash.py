"""Crash test: SIGKILL the labeling server mid-session; every acknowledged judgment survives.

A judgment counts as acknowledged once the app shows the next task, which it draws only after
`Store.submit` committed. The server's whole process group is killed while one more answer is
in flight; the store must then hold every acknowledged answer exactly once (the in-flight one
at most once), pass SQLite's integrity check, and serve the rater again after a restart.

Two drivers: the real server in Chromium (the issue's test), and the app's own code path
(`AppTest`) in a child process killed at a random moment, which needs no browser.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

from labeling_app.store import Store
from tests.labeling_app.conftest import PASSWORDS, procedural_batch
from tests.labeling_app.live_server import (
    launch_chromium,
    log_in,
    needs_chromium,
    start_server,
    wait_task,
)


def check_store(db, viewer, rater, acknowledged: list[int], in_flight: int | None) -> set[int]:
    """Assert the durability rules; return the task ids the rater has live answers for."""
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store(db) as store:
        rows = store.judgments(viewer, rater_id=rater.id)
    per_task = Counter(j.task_id for j in rows)
    assert all(n == 1 for n in per_task.values()), per_task
    answers = {j.task_id: j.answer for j in rows}
    for task_id in acknowledged:
        assert answers.get(task_id) == {"choice": "left"}, (task_id, answers)
    extra = set(answers) - set(acknowledged)
    assert extra <= ({in_flight} if in_flight is not None else set()), (extra, in_flight)
    return set(answers)


@needs_chromium
def test_sigkill_server_keeps_acknowledged_judgments(store_env, tmp_path):
    from playwright.sync_api import sync_playwright

    acknowledged: list[int] = []
    server = start_server(store_env.db, tmp_path / "server.log")
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            log_in(page, server.url, "alice", PASSWORDS["alice"])
            wait_task(page, 1)
            for task_id in (1, 2, 3):  # pair tasks of the first prompt
                page.keyboard.press("1")
                wait_task(page, task_id + 1)  # next task on screen: acknowledged
                acknowledged.append(task_id)
            # task 4 is a ranking: skip it, then answer the next pair and kill at once
            page.keyboard.press("s")
            wait_task(page, 5)
            page.keyboard.press("1")
            wait_task(page, 6)
            acknowledged.append(5)
            page.keyboard.press("1")  # task 6: in flight when the server dies
            server.kill(signal.SIGKILL)
            browser.close()
        assert server.proc.returncode == -signal.SIGKILL
        answered = check_store(
            store_env.db, store_env.admin, store_env.alice, acknowledged, in_flight=6
        )

        # a restarted server picks up where the rater was
        server = start_server(store_env.db, tmp_path / "server2.log")
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            log_in(page, server.url, "alice", PASSWORDS["alice"])
            expected = 7 if 6 in answered else 6
            wait_task(page, expected)
            page.keyboard.press("1")
            wait_task(page, expected + 1)
            browser.close()
    finally:
        server.kill(signal.SIGKILL)
    check_store(
        store_env.db, store_env.admin, store_env.alice, [*acknowledged, expected], in_flight=6
    )


_CHILD = r"""
import os, sys, time
from streamlit.testing.v1 import AppTest
from labeling_app.app.session import INPUT_GRACE_SECONDS
at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
at.text_input(key="login_name").input("alice")
at.text_input(key="login_password").input(sys.argv[2])
at.button[0].click().run()
from labeling_app.app.session import SERVED
def shown():
    return at.session_state[SERVED].task.task_id
while True:
    before = shown()
    button = next(b for b in at.button if b.label.startswith(("Left", "Skip")))
    time.sleep(INPUT_GRACE_SECONDS)  # sooner, the app ignores the click (a double click's)
    button.click().run()  # ranking tasks are skipped, pairs answered left
    if button.label.startswith("Left"):
        print("ACK", before, flush=True)
"""


def test_sigkill_app_process_keeps_acknowledged_judgments(store_env, tmp_path):
    from labeling_app.app import MAIN_SCRIPT
    from labeling_app.app.settings import AppSettings

    more = [f"a small {c} circle on a white background" for c in ("red", "blue", "green")]
    procedural_batch(store_env.store, "more", more * 4, k=4, kinds=("pair",), overlap=1)
    env = {**os.environ, **AppSettings(db=str(store_env.db), gold_rate=0.0).to_env()}
    log = tmp_path / "child.log"
    with open(log, "wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(MAIN_SCRIPT), PASSWORDS["alice"]],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
            start_new_session=True,
        )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(lines) < 5 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(random.uniform(0.0, 0.3))  # kill at any point of a later answer
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    lines += child.stdout.readlines()  # acknowledged before the kill, not read yet
    acknowledged = [int(x.split()[1]) for x in lines if x.startswith("ACK ") and x.endswith("\n")]
    assert len(acknowledged) >= 5, f"the child app stopped early:\n{log.read_text()}"
    assert child.returncode == -signal.SIGKILL, "the child finished every task before the kill"
    # the next pair task after the last acknowledged one may have been committed, unshown
    pairs = sorted(t.task_id for t in store_env.store.tasks() if t.kind == "pair")
    in_flight = next((t for t in pairs if t > acknowledged[-1]), None)
    check_store(store_env.db, store_env.admin, store_env.alice, acknowledged, in_flight)
