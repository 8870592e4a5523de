"""A real `artalign label serve` process and a Chromium page for the browser and crash tests.

The server runs in its own process group (so a test can SIGKILL all of it) on a free port;
`wait_task` treats a task as acknowledged once the page shows the next one, which the app
draws only after the store committed the answer, and returns once the app takes input on it
(INPUT_GRACE_SECONDS after it was served).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling_app.app.session import INPUT_GRACE_SECONDS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser test skipped: Debian chromium is not at /usr/bin/chromium; "
    "install it with `sudo apt-get install chromium chromium-driver`",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    """A running server: its process (group leader), URL, log file and port."""

    proc: subprocess.Popen
    url: str
    log: Path
    port: int

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the whole process group and reap the leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)


def start_server(
    db: Path, log: Path, *options: str, port: int | None = None, timeout: float = 90.0
) -> LiveServer:
    """Start `artalign label serve --db DB` and wait until Streamlit answers its health check.

    `port`: a free one unless given (a restart on the port of a killed server, which pages
    still open there reconnect to).
    """
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "base_models.cli_main",
        "label",
        "serve",
        "--db",
        str(db),
        "--port",
        str(port),
        "--gold-rate",
        "0",
        *options,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = LiveServer(proc, f"http://127.0.0.1:{port}", log, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"server did not come up in {timeout} s:\n{log.read_text()}")


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def log_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_role("textbox", name="Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def shown_task(page) -> int | None:
    """The task id the page shows now (None while none is drawn), from the hidden marker the
    browser script reads (raters never see task ids)."""
    marker = page.locator("#artalign-task")
    if not marker.count():
        return None
    value = marker.first.get_attribute("data-task")
    return int(value) if value else None


def wait_task(page, task_id: int, timeout: float = 30.0) -> None:
    """Wait until the page shows task `task_id`, fully drawn, with its hotkeys listening, and
    past the app's input grace window (input sooner is ignored, as a double click's is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if shown_task(page) == task_id and not _running(page) and _hotkeys_ready(page):
            page.wait_for_timeout(INPUT_GRACE_SECONDS * 1000)
            return
        page.wait_for_timeout(50)
    alerts = page.get_by_test_id("stAlert").all_inner_texts()
    raise AssertionError(
        f"page shows task {shown_task(page)}, expected {task_id}; running: {_running(page)}, "
        f"hotkeys ready: {_hotkeys_ready(page)}, alerts: {alerts}"
    )


def _hotkeys_ready(page) -> bool:
    """Whether the hotkey iframe has loaded and installed its listener (it loads on its own)."""
    return page.evaluate("window.__artalignHotkeysInstalled === true")


def _running(page) -> bool:
    """Whether Streamlit is still running the script (stale elements may still be on screen)."""
    state = page.get_by_test_id("stApp").get_attribute("data-test-script-state")
    return state != "notRunning"
