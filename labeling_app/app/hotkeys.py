"""Keyboard shortcuts: a tiny same-origin iframe installs one keydown listener on the app page.

The listener (hotkeys.js) maps a key to a button label and clicks the visible button whose text
is that label (or the label followed by its key hint), so the click goes through the button's
own callback, exactly like a mouse click. On a ranking task number keys set the rank of the
focused image, and a click on an image picks it in a pair (as in the Pick-a-Pic app). The
listener is created in the parent page's own realm (a <script> element appended to the parent
document), so it keeps working when Streamlit replaces the iframe; re-rendering only updates
the key map. Keys work wherever focus is (a select box too) except in text boxes, open lists
and sliders; keys with Ctrl/Alt/Meta are left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from labeling_app.app.settings import ACTION_LABELS, key_hint, normalize_key
from labeling_app.app.text import plain

_LISTENER = (Path(__file__).with_name("hotkeys.js")).read_text(encoding="utf-8")

_INSTALLER = """<script>
(function () {
  var w = window.parent;
  w.__artalignHotkeys = %s;
  w.__artalignPick = %s;
  if (w.__artalignHotkeysInstalled) return;
  w.__artalignHotkeysInstalled = true;
  var s = w.document.createElement("script");
  s.textContent = %s;
  w.document.head.appendChild(s);
})();
</script>"""


def button_label(action: str, hotkeys: dict[str, tuple[str, ...]]) -> str:
    """The text of an action's button: its label and key hint, e.g. `Left (← / 1)`.

    Button labels are markdown; key names come from the hotkey file, so each is escaped (a key
    such as `*` or `_` shows as itself; the rendered text, which the listener matches, is the same).
    The space key stays " " (plain would drop it), so that it reads `Space`.
    """
    keys = tuple(plain(k) or k for k in hotkeys.get(action, ()))
    label = ACTION_LABELS[action]
    return f"{label} ({key_hint(keys)})" if keys else label


def key_map(hotkeys: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Normalised key -> button label, as the browser listener reads it."""
    return {normalize_key(k): ACTION_LABELS[a] for a, keys in hotkeys.items() for k in keys}


def installer_html(hotkeys: dict[str, tuple[str, ...]]) -> str:
    """The iframe document that (re)installs the listener with this key map."""
    pick = [ACTION_LABELS["left"], ACTION_LABELS["right"]]
    return _INSTALLER % (json.dumps(key_map(hotkeys)), json.dumps(pick), json.dumps(_LISTENER))


def render(hotkeys: dict[str, tuple[str, ...]]) -> None:
    """Put the zero-height hotkey iframe on the page."""
    html = installer_html(hotkeys)
    if hasattr(st, "iframe"):  # streamlit >= 1.52; components.v1.html is deprecated there
        st.iframe(html, height=1)
    else:
        import streamlit.components.v1 as components

        components.html(html, height=0)
