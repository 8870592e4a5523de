"""The pairwise task: two images side by side, a pick button under each; tie / both bad / skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from labeling_app.app import session
from labeling_app.app.hotkeys import button_label
from labeling_app.app.images import show_image
from labeling_app.app.settings import AppSettings
from labeling_app.store import Store

CHOICES = ("left", "right", "tie", "both_bad")
SIDES = CHOICES[:2]  # the pick button under the left image, then the right
RATING_SCALE = (1, 7)


def rating_sliders(key: str) -> None:
    """The optional 1-7 sliders for prompt fidelity and quality of one image."""
    st.slider("Prompt fidelity", *RATING_SCALE, value=4, key=f"{key}_fidelity")
    st.slider("Quality", *RATING_SCALE, value=4, key=f"{key}_quality")


def read_ratings(keys: list[str]) -> dict[str, list[int]]:
    """The slider values of each image, in display order (callbacks read them from state)."""
    return {
        name: [int(st.session_state[f"{k}_{name}"]) for k in keys]
        for name in ("fidelity", "quality")
    }


def _answer(current: session.Served, choice: str, rating_keys: list[str] | None) -> None:
    answer: dict[str, Any] = {"choice": choice}
    if rating_keys:
        answer["ratings"] = read_ratings(rating_keys)
    session.queue_answer(current, answer)


def skip_button(settings: AppSettings, current: session.Served) -> None:
    """Skip: the task leaves the screen and comes back once nothing new is left."""
    st.button(
        button_label("skip", settings.hotkeys),
        key=f"skip_{current.token}",
        on_click=session.queue_skip,
        args=(current,),
    )


def render(
    store: Store, settings: AppSettings, current: session.Served, extra: Callable[[], None]
) -> None:
    """Draw the two images, each with its pick button right under it (as wide as the image),
    then one row of tie / both bad / skip and `extra` (the page's undo button)."""
    task, token = current.task, current.token
    rating_keys = [f"rate_{token}_{i}" for i in range(2)] if settings.ratings else None
    for i, col in enumerate(st.columns(2)):
        with col:
            show_image(store, task.image_ids[i], settings.image_px)
            if rating_keys:
                rating_sliders(rating_keys[i])
            st.button(
                button_label(SIDES[i], settings.hotkeys),
                key=f"{SIDES[i]}_{token}",
                on_click=_answer,
                args=(current, SIDES[i], rating_keys),
                width=settings.image_px,
            )
    with st.container(horizontal=True):
        for choice in CHOICES[2:]:
            st.button(
                button_label(choice, settings.hotkeys),
                key=f"{choice}_{token}",
                on_click=_answer,
                args=(current, choice, rating_keys),
            )
        skip_button(settings, current)
        extra()
