"""How the rater's page sits on a small screen, and what it tells the browser script.

A pair task with its buttons fits a 1024x640 window (the browser test checks it): the page's
top padding is trimmed, messages float as toasts instead of pushing the buttons down, and the
task's internal id is never shown. The browser script (hotkeys.js) learns which task is on
screen from a hidden marker in the sidebar: its kind (pair or rank) and its client token; and
it clicks a hidden button to rerun the page once it has reconnected after a server restart.
"""

from __future__ import annotations

import html
from typing import Any

import streamlit as st

_COMPACT_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; padding-bottom: 1rem; }
[data-testid="stMain"] h3 { padding: 0.25rem 0 0 0; }
.st-key-artalign_reconnect { display: none; }
</style>"""
RECONNECT_KEY = "artalign_reconnect"


def compact() -> None:
    """Trim the page's padding (a style element only: it takes no room on the page)."""
    st.html(_COMPACT_CSS)


def task_marker(current: Any) -> None:
    """The hidden element the browser script reads: task id, kind ("pair"/"rank") and token."""
    task = current.task
    kind = "pair" if task.kind == "pair" else "rank"
    attrs = {"task": task.task_id, "kind": kind, "token": current.token}
    data = " ".join(f'data-{k}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items())
    st.sidebar.html(f'<div id="artalign-task" {data} hidden></div>')


def reconnect_button() -> None:
    """A hidden button the browser script clicks when the page has reconnected to the server
    (after a restart): the click starts a run on the new server, which restores the session
    from the URL and binds the task's buttons there, so the rater's next key press counts."""
    st.button("Reconnect", key=RECONNECT_KEY)
