"""The rater page: batch choice, progress, the prompt, the task on screen, undo and hotkeys."""

from __future__ import annotations

from typing import Any

import streamlit as st

from labeling_app.app import hotkeys, pairwise, ranking, session
from labeling_app.app.settings import AppSettings
from labeling_app.app.text import plain
from labeling_app.store import Store

ANY_BATCH = "All open batches"


def _on_batch_change() -> None:
    choice = st.session_state["batch_choice"]
    session.set_batch(None if choice == ANY_BATCH else int(choice.split(":", 1)[0]))


def batch_picker(store: Store) -> None:
    """Sidebar choice of the batch to label (open batches only; options show names as text)."""
    open_batches = [b for b in store.batches() if not b.done]
    options = [ANY_BATCH] + [f"{b.id}: {b.name}" for b in open_batches]
    if st.session_state.get("batch_choice") not in options:
        st.session_state["batch_choice"] = ANY_BATCH
        session.set_batch(None)
    st.sidebar.selectbox("Batch", options, key="batch_choice", on_change=_on_batch_change)


def show_progress(store: Store, viewer: Any, batch_id: int | None) -> None:
    """The rater's own count and the batch's overall completion (no other rater's data)."""
    p = store.progress(viewer, batch_id=batch_id)
    mine = p["per_rater"].get(viewer.id, 0)
    needed = max(1, p["needed"])
    st.progress(min(1.0, p["done"] / needed))
    where = "this batch" if batch_id is not None else "all batches"
    st.caption(
        f"You: {mine} judgments in {where} · overall: {p['done']} / {p['needed']} judgments done"
    )


def render(store: Store, settings: AppSettings, viewer: Any) -> None:
    """Draw the labeling page for the logged-in rater."""
    batch_picker(store)
    current = session.serve(store, settings, viewer)
    show_progress(store, viewer, st.session_state.get(session.BATCH))
    session.show_flash()
    if current is None:
        st.success("No tasks left for you here. Thank you!")
    else:
        task = current.task
        st.caption(f"Task {task.task_id} · {'pick one' if task.kind == 'pair' else 'rank them'}")
        st.markdown(f"## {plain(task.prompt)}")  # the prompt is data, not formatting
        if task.kind == "pair":
            pairwise.render(store, settings, current)
        else:
            ranking.render(store, settings, current)
    st.button(
        hotkeys.button_label("undo", settings.hotkeys),
        key=f"undo_{current.token if current else 'none'}",
        on_click=session.queue_undo,
        args=(current.token if current else None,),
        help="Withdraw your last judgment and judge that task again.",
    )
    hotkeys.render(settings.hotkeys)
