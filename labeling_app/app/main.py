"""The Streamlit script of `artalign label serve`: login, then the labeling or the admin page.

Settings come from the ARTALIGN_LABEL_SETTINGS environment variable (see settings.py). Each
script run opens its own store connection, finds the rater (in the session, or restored from
the URL's session token after a reload or a server restart), applies the actions the buttons
queued (each one committed before the page moves on), draws the page and closes the connection.
"""

from __future__ import annotations

import streamlit as st

from base_models.errors import ArtalignError
from labeling_app.app import admin, labeling, login, session
from labeling_app.app.settings import AppSettings
from labeling_app.app.text import plain

PAGES = ("Label", "Admin")


def _sidebar(store, viewer) -> str:
    st.sidebar.markdown(f"Logged in as **{plain(viewer.name)}** ({viewer.role})")
    page = "Label"
    if viewer.role == "admin":  # lands on Admin: the Label page serves (and locks) a task
        page = st.sidebar.radio("Page", PAGES, index=PAGES.index("Admin"), key="page")
    if st.sidebar.button("Log out", key="logout"):
        session.log_out(store)  # revokes the session token too
        st.rerun()
    return page


def main() -> None:
    """One run of the app for one browser session."""
    st.set_page_config(page_title="artalign labeling", layout="wide")
    try:
        settings = AppSettings.from_env()
    except ArtalignError as e:
        st.error(str(e))
        st.stop()
    store = session.open_store(settings)
    try:
        viewer = session.restore(store)
        if viewer is None:
            login.render(store)
            return
        session.apply_pending(store, viewer)
        if _sidebar(store, viewer) == "Admin" and viewer.role == "admin":
            session.show_flash()
            admin.render(store, viewer, gold=settings.gold_rate > 0)
        else:
            labeling.render(store, settings, viewer)
    finally:
        store.close()


if __name__ == "__main__":
    main()
