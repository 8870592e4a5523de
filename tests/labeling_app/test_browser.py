"""End to end in a real browser: `artalign label serve` driven by Debian Chromium via Playwright.

A rater logs in, judges by clicks and by hotkeys (every default key but the duplicates), undoes
one judgment, ranks three images, skips one; the test then reads the rows back from SQLite.
A login survives a reload and a server restart. The batch (conftest.py) serves, per prompt,
3 pair tasks then one 3-way rank task, in order.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from labeling_app.store import Store
from tests.labeling_app.conftest import PASSWORDS
from tests.labeling_app.live_server import (
    launch_chromium,
    log_in,
    needs_chromium,
    shown_task,
    start_server,
    wait_task,
)

pytestmark = needs_chromium


SMALL_SCREEN = {"width": 1024, "height": 640}
ADMIN_SCREEN = {"width": 1280, "height": 1600}
PAIR_BUTTONS = ("Left", "Right", "Tie", "Both bad", "Skip", "Undo last")


@contextlib.contextmanager
def alice_on_task_one(store_env, tmp_path, viewport=None, admin_page: bool = False):
    """A live server and a Chromium page where alice has logged in and sees task 1 (and with
    `admin_page`, a second page where the admin has logged in: yields both pages)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    server = start_server(store_env.db, tmp_path / "server.log")
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport=viewport or {"width": 1400, "height": 1000})
            log_in(page, server.url, "alice", PASSWORDS["alice"])
            wait_task(page, 1)
            if admin_page:
                admin = browser.new_page(viewport=ADMIN_SCREEN)  # tall: the whole page
                log_in(admin, server.url, "admin", PASSWORDS["admin"])
                admin.get_by_role("heading", name="Agreement", exact=True).wait_for()
                yield page, admin
            else:
                yield page
            browser.close()
    finally:
        server.kill()


def choose_rank(page, image: int, rank: int) -> None:
    group = page.get_by_role("radiogroup", name=f"Rank of image {image} (1 = best)")
    group.get_by_text(str(rank), exact=True).click()


def wait_idle(page) -> None:
    page.wait_for_function(
        "document.querySelector('[data-testid=stApp]')"
        ".getAttribute('data-test-script-state') === 'notRunning'"
    )


def wait_connection(page, ok, timeout: float = 60.0) -> None:
    """Wait until `ok(state)` for the page's websocket state (CONNECTED, PINGING_SERVER, ...)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.get_by_test_id("stApp").get_attribute("data-test-connection-state")
        if ok(state):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the page's connection stayed {state}")


def test_rater_session_in_chromium(store_env, tmp_path):
    with alice_on_task_one(store_env, tmp_path) as page:
        # images are drawn large (nearest-neighbour upscaled 16 px -> 256 px)
        box = page.get_by_test_id("stImage").first.locator("img").bounding_box()
        assert box["width"] == 256
        page.get_by_role("button", name="Left (← / 1)").click()  # task 1: click
        wait_task(page, 2)
        page.keyboard.press("ArrowRight")  # task 2: hotkey
        wait_task(page, 3)
        page.keyboard.press("t")  # task 3: tie ...
        wait_task(page, 4)
        page.keyboard.press("u")  # ... undone: task 3 comes back
        wait_task(page, 3)
        page.keyboard.press("b")  # task 3 again: both bad
        wait_task(page, 4)
        for image, rank in ((1, 2), (2, 1), (3, 3)):  # task 4: a ranking
            choose_rank(page, image, rank)
            wait_idle(page)
        page.keyboard.press("Enter")  # focus is still on a rank button: Enter submits
        wait_task(page, 5)
        page.keyboard.press("1")  # task 5: left by its second key
        wait_task(page, 6)
        page.keyboard.press("s")  # task 6: skip
        wait_task(page, 7)
    with Store(store_env.db) as store:
        rows = store.judgments(store_env.admin, rater_id=store_env.alice.id, include_undone=True)
        got = [(j.task_id, j.answer, j.undone) for j in sorted(rows, key=lambda j: j.id)]
    assert got == [
        (1, {"choice": "left"}, False),
        (2, {"choice": "right"}, False),
        (3, {"choice": "tie"}, True),
        (3, {"choice": "both_bad"}, False),
        (4, {"ranks": [2, 1, 3]}, False),
        (5, {"choice": "left"}, False),
    ]
    assert all(j.seconds is not None and j.seconds >= 0 for j in rows)
    with sqlite3.connect(store_env.db) as c:
        skipped = c.execute(
            "SELECT task_id FROM assignment WHERE rater_id = ? AND state = 'skipped'",
            (store_env.alice.id,),
        ).fetchall()
    assert skipped == [(6,)]


def test_double_click_judges_one_task_only(store_env, tmp_path):
    """Two clicks on "Left" 100 ms apart: the second reaches the next task as it appears and
    is ignored, so task 1 gets one judgment and task 2, which the rater has not seen, none."""
    with alice_on_task_one(store_env, tmp_path) as page:
        box = page.get_by_role("button", name="Left (← / 1)").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.click(x, y)
        page.wait_for_timeout(100)
        page.mouse.click(x, y)
        wait_task(page, 2)
        page.wait_for_timeout(1000)  # any late rerun of the second click has finished
        wait_idle(page)
        assert shown_task(page) == 2
    with Store(store_env.db) as store:
        rows = store.judgments(store_env.admin, rater_id=store_env.alice.id, include_undone=True)
    assert [(j.task_id, j.answer) for j in rows] == [(1, {"choice": "left"})]
    with sqlite3.connect(store_env.db) as c:
        states = c.execute(
            "SELECT task_id, state FROM assignment WHERE rater_id = ?", (store_env.alice.id,)
        ).fetchall()
    assert sorted(states) == [(1, "done"), (2, "open")]


def test_login_survives_reload_and_server_restart(store_env, tmp_path):
    """The session token in the URL logs the rater back in after a reload, and after the
    server is killed and started again on the same port: the open page reconnects and reruns
    on its own (the hotkey script clicks the hidden reconnect button), so without any input
    the same task is back with a message, and the first key press after it is saved."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    server = start_server(store_env.db, tmp_path / "server.log")
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            log_in(page, server.url, "alice", PASSWORDS["alice"])
            wait_task(page, 1)
            page.keyboard.press("1")
            wait_task(page, 2)
            assert "session=" in page.url
            page.reload()
            wait_task(page, 2)  # no login page: the same task
            server.kill(signal.SIGKILL)
            wait_connection(page, lambda state: state != "CONNECTED")
            server = start_server(store_env.db, tmp_path / "server2.log", port=server.port)
            wait_connection(page, lambda state: state == "CONNECTED")
            still = page.get_by_test_id("stToast").filter(has_text="You are still logged in")
            still.wait_for(timeout=30_000)  # a run on the new server, with no key pressed
            wait_task(page, 2)  # logged in again from the URL, the same task
            assert not page.get_by_role("button", name="Log in").count()
            # Usually the first press counts; under load (seen once in CI) it can still be lost,
            # so the rater may press again; exactly one judgment of task 2 must be saved.
            for attempt in range(3):
                page.keyboard.press("2")
                try:
                    wait_task(page, 3, timeout=10.0)
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
            browser.close()
    finally:
        server.kill()
    with Store(store_env.db) as store:
        rows = store.judgments(store_env.admin, rater_id=store_env.alice.id)
    assert [(j.task_id, j.answer) for j in rows] == [
        (1, {"choice": "left"}),
        (2, {"choice": "right"}),
    ]


def judged(store_env) -> list[tuple[int, dict]]:
    with Store(store_env.db) as store:
        rows = store.judgments(store_env.admin, rater_id=store_env.alice.id)
    return [(j.task_id, j.answer) for j in sorted(rows, key=lambda j: j.id)]


def test_hotkeys_work_after_the_batch_picker(store_env, tmp_path):
    """Choosing a batch leaves the focus in the picker; number keys still judge (item 2)."""
    with alice_on_task_one(store_env, tmp_path) as page:
        page.get_by_role("combobox", name="Batch").click()
        page.get_by_role("option", name="1: b1", exact=True).click()
        wait_idle(page)
        focused = page.evaluate("document.activeElement.getAttribute('role')")
        assert focused == "combobox"  # the keys below reach a focused select box
        wait_task(page, 1)
        page.keyboard.press("1")
        wait_task(page, 2)
        page.keyboard.press("2")
        wait_task(page, 3)
        assert not page.get_by_test_id("stAlert").count()
        assert not page.get_by_test_id("stToast").count()
    assert judged(store_env) == [(1, {"choice": "left"}), (2, {"choice": "right"})]


def test_ranking_by_keyboard_and_picking_by_click(store_env, tmp_path):
    """Number keys rank the focused image (the focus then moves to the next unranked one),
    arrows move the focus, Esc clears nothing, Enter submits; a click on an image picks it."""
    with alice_on_task_one(store_env, tmp_path) as page:
        for task in (1, 2, 3):
            page.keyboard.press("1")
            wait_task(page, task + 1)
        for key in ("3", "1", "2"):  # images 1, 2, 3 in turn
            page.keyboard.press(key)
            wait_idle(page)
        for key in ("ArrowLeft", "ArrowLeft", "2", "Escape"):  # back to image 1: rank 2
            page.keyboard.press(key)
            wait_idle(page)
        checked = [
            page.get_by_role("radiogroup", name=f"Rank of image {i} (1 = best)")
            .locator("input:checked")
            .get_attribute("value")
            for i in (1, 2, 3)
        ]
        assert checked == ["1", "0", "1"]  # option indexes of ranks 2, 1, 2: Esc kept them
        page.keyboard.press("Enter")
        wait_task(page, 5)
        page.get_by_test_id("stImage").nth(1).locator("img").click()  # task 5: the right one
        wait_task(page, 6)
    assert judged(store_env)[3:] == [(4, {"ranks": [2, 1, 2]}), (5, {"choice": "right"})]


def box_of(page, name: str) -> dict:
    return page.get_by_role("button", name=re.compile("^" + re.escape(name))).bounding_box()


def test_pair_task_fits_a_small_screen_and_screenshots(store_env, tmp_path):
    """At 1024x640 every button of a pair task is on screen, each pick button sits under its
    image, no internal task id shows, and a message does not move the buttons (item 7).
    Saves the rater's and the admin's page to $ARTALIGN_SCREENSHOTS (docs/img via
    `make screenshots`), else to the test's temporary folder."""
    shots = Path(os.environ.get("ARTALIGN_SCREENSHOTS") or tmp_path)
    with alice_on_task_one(store_env, tmp_path, SMALL_SCREEN, admin_page=True) as (page, admin):
        boxes = {name: box_of(page, name) for name in PAIR_BUTTONS}
        for name, b in boxes.items():
            assert b["y"] >= 0 and b["y"] + b["height"] <= SMALL_SCREEN["height"], (name, b)
            assert b["x"] >= 0 and b["x"] + b["width"] <= SMALL_SCREEN["width"], (name, b)
        images = page.get_by_test_id("stImage").locator("img")
        for i, name in enumerate(("Left", "Right")):
            img, button = images.nth(i).bounding_box(), boxes[name]
            assert abs(button["x"] - img["x"]) < 2 and abs(button["width"] - img["width"]) < 2
            assert img["y"] + img["height"] <= button["y"] < img["y"] + img["height"] + 40
        text = page.get_by_test_id("stMain").inner_text()
        assert not re.search(r"\btask\s*(id\s*)?#?\d", text, re.IGNORECASE), text
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "label_rater.png"))
        page.keyboard.press("u")  # nothing to undo: a message, which floats
        page.get_by_test_id("stToast").filter(has_text="Nothing to undo").wait_for()
        assert box_of(page, "Left") == boxes["Left"]
        for key, task in (("1", 2), ("2", 3)):  # two judgments for the admin's tables
            page.keyboard.press(key)
            wait_task(page, task)
        admin.reload()  # still logged in (the session token in the URL)
        admin.get_by_role("heading", name="Agreement", exact=True).wait_for()
        wait_idle(admin)
        admin.screenshot(path=str(shots / "label_admin.png"))
    for name in ("label_rater.png", "label_admin.png"):
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
