"""The Streamlit labeling app (`artalign label serve`).

`main.py` is the script Streamlit runs; the other modules are its parts (login, pairwise and
ranking views, admin page, hotkeys, session state). Only this package imports streamlit, and
this `__init__` does not, so `labeling_app.app.settings` stays importable without it.
"""

from pathlib import Path

MAIN_SCRIPT = Path(__file__).with_name("main.py")
