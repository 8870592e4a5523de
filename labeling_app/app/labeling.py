"""The rater page: batch choice, progress, the prompt, the task on screen, undo and hotkeys."""

from __future__ import annotations

from typing import Any

import streamlit as st

from labeling_app.app import hotkeys, layout, pairwise, ranking, session
from labeling_app.app.settings import AppSettings
from labeling_app.app.text import plain
from labeling_app.store import Store

ANY_BATCH = "All open batches"
# Shown above the images of a batch whose admin wrote no instructions.
DEFAULT_INSTRUCTIONS = (
    "Pick the image that better matches the prompt. Tie: equally good. Both bad: neither matches."
)
DEFAULT_RANK_INSTRUCTIONS = (
    "Rank the images by how well they match the prompt, 1 = best. "
    "Give equally good images the same rank."
)


def _on_batch_change() -> None:
    choice = st.session_state["batch_choice"]
    session.set_batch(None if choice == ANY_BATCH else int(choice.split(":", 1)[0]))


def remaining_by_batch(store: Store, settings: AppSettings, viewer: Any) -> dict[int, int]:
    """Open batch id -> tasks still left for this rater (gold counted if the server serves it).

    The admin page counts with the same call, so both pages show the same number.
    """
    return store.remaining_tasks(viewer, include_gold=settings.gold_rate > 0)


def batch_picker(batches: dict[int, str], remaining: dict[int, int]) -> None:
    """Sidebar choice of the batch to label, read again on every run: open batches with a
    task left for this rater only (options show names as text).

    A chosen batch that is finished (closed, or nothing left for this rater) leaves the list,
    and labeling goes on from all open batches, with a note saying so.
    """
    options = [ANY_BATCH] + [f"{b}: {batches[b]}" for b in remaining if b in batches]
    choice = st.session_state.get("batch_choice")
    if choice not in options:
        if choice not in (None, ANY_BATCH):
            session.flash(
                "info",
                f"Batch {choice.split(': ', 1)[-1]} has no tasks left for you; "
                "showing all open batches.",
            )
        st.session_state["batch_choice"] = ANY_BATCH
        session.set_batch(None)
    st.sidebar.selectbox("Batch", options, key="batch_choice", on_change=_on_batch_change)


def remaining_caption(remaining: dict[int, int], batch_id: int | None, gold: bool) -> str:
    """ "your remaining tasks in this batch: N (gold questions included)" and the like."""
    n = remaining.get(batch_id, 0) if batch_id is not None else sum(remaining.values())
    where = "this batch" if batch_id is not None else "all open batches"
    note = "gold questions included" if gold else "no gold questions"
    return f"Your remaining tasks in {where}: {n} ({note})"


def show_progress(
    store: Store, viewer: Any, batch_id: int | None, remaining: dict[int, int], gold: bool
) -> None:
    """The rater's own progress, in one line: tasks left and judgments made (no other rater's
    data; no progress bar, which would cost the pair task's buttons their room on a small
    screen)."""
    mine = store.progress(viewer, batch_id=batch_id)["per_rater"].get(viewer.id, 0)
    st.caption(f"{remaining_caption(remaining, batch_id, gold)} · your judgments: {mine}")


def show_instructions(store: Store, task: Any) -> None:
    """The batch's instructions from its admin (plain text), or the default for the kind."""
    text = store.batch(task.batch_id).instructions
    if not text:
        text = DEFAULT_INSTRUCTIONS if task.kind == "pair" else DEFAULT_RANK_INSTRUCTIONS
    st.text(text)  # st.text shows the admin's text as it is, never as markdown


def undo_button(settings: AppSettings, current: session.Served | None) -> None:
    """Undo last: withdraws the rater's last judgment or skip, bound to the task on screen."""
    st.button(
        hotkeys.button_label("undo", settings.hotkeys),
        key=f"undo_{current.token if current else 'none'}",
        on_click=session.queue_undo,
        args=(current.token if current else None,),
        help="Withdraw your last judgment or skip and answer that task again.",
    )


def render(store: Store, settings: AppSettings, viewer: Any) -> None:
    """Draw the labeling page for the logged-in rater: progress, the prompt, the instructions
    and the task; messages float as toasts, and no internal task id is shown."""
    gold = settings.gold_rate > 0
    remaining = remaining_by_batch(store, settings, viewer)
    batch_picker({b.id: b.name for b in store.batches() if not b.done}, remaining)
    current = session.serve(store, settings, viewer)
    layout.compact()
    show_progress(store, viewer, st.session_state.get(session.BATCH), remaining, gold)
    session.show_flash(toast=True)
    if current is None:
        st.success("No tasks left for you here. Thank you!")
        undo_button(settings, None)
    else:
        task = current.task
        layout.task_marker(current)
        st.markdown(f"### {plain(task.prompt)}")  # the prompt is data, not formatting
        show_instructions(store, task)
        view = pairwise if task.kind == "pair" else ranking
        view.render(store, settings, current, extra=lambda: undo_button(settings, current))
    layout.reconnect_button()
    hotkeys.render(settings.hotkeys)
