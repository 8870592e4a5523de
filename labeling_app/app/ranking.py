"""The ranking task: k images in a row, rank buttons under each (equal ranks are ties), Submit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from labeling_app.app import session
from labeling_app.app.hotkeys import button_label
from labeling_app.app.images import show_image
from labeling_app.app.pairwise import rating_sliders, read_ratings, skip_button
from labeling_app.app.settings import AppSettings
from labeling_app.store import Store


def rank_label(i: int) -> str:
    """The label of image i's rank buttons; the browser script finds them by its start."""
    return f"Rank of image {i + 1} (1 = best)"


def competition_ranks(chosen: list[int]) -> list[int]:
    """Ranks as `1 + number of images placed strictly better`: [1, 3, 3, 2] -> [1, 3, 3, 2],
    [2, 2, 4, 4] -> [1, 1, 3, 3]. Only the order the rater chose matters, so the stored ranks
    do not depend on which numbers were picked for a tie."""
    return [1 + sum(other < mine for other in chosen) for mine in chosen]


def _submit(current: session.Served, rank_keys: list[str], rating_keys: list[str] | None) -> None:
    chosen = [st.session_state.get(k) for k in rank_keys]
    if any(r is None for r in chosen):
        session.flash("warning", "Give every image a rank (equal ranks mean a tie), then submit.")
        return
    answer: dict[str, Any] = {"ranks": competition_ranks([int(r) for r in chosen])}
    if rating_keys:
        answer["ratings"] = read_ratings(rating_keys)
    session.queue_answer(current, answer)


def render(
    store: Store, settings: AppSettings, current: session.Served, extra: Callable[[], None]
) -> None:
    """Draw the k images with a row of rank buttons (radio) under each, then Submit, Skip and
    `extra` (the page's undo button). The browser script sets ranks by number keys."""
    task, token = current.task, current.token
    k = len(task.image_ids)
    rank_keys = [f"rank_{token}_{i}" for i in range(k)]
    rating_keys = [f"rate_{token}_{i}" for i in range(k)] if settings.ratings else None
    width = settings.image_px if k <= 4 else max(96, settings.image_px * 4 // k)
    for i, (col, image_id) in enumerate(zip(st.columns(k), task.image_ids, strict=True)):
        with col:
            show_image(store, image_id, width)
            st.radio(
                rank_label(i),
                options=list(range(1, k + 1)),
                index=None,
                horizontal=True,
                key=rank_keys[i],
            )
            if rating_keys:
                rating_sliders(rating_keys[i])
    with st.container(horizontal=True):
        st.button(
            button_label("submit", settings.hotkeys),
            key=f"submit_{token}",
            type="primary",
            on_click=_submit,
            args=(current, rank_keys, rating_keys),
        )
        skip_button(settings, current)
        extra()
