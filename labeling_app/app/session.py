"""Per-browser-session state of the app: who is logged in, the task on screen, queued actions.

Buttons do not touch the store themselves: their callbacks queue an action bound to the task
that was on screen (its assignment id and the client token made when it was served), and the
next script run applies the queue with that run's own store connection. A double click or a
click on a stale button is dropped, and would re-send the same client token anyway, which the
store keeps once.

A freshly served task ignores input for INPUT_GRACE_SECONDS: the second click of a double click
often arrives just as the next task is drawn, on that task's own buttons, so no token can tell
it from a real click; its arrival time (when its callback runs, on the server) can. Measured
here, not in the browser, it holds for every browser and for hotkeys too.

A login survives a reload and a server restart: the store's session token (`Store.open_session`)
sits in the page URL (`?session=TOKEN`), which the browser keeps, and a run with no rater in
its session state but a token in the URL restores the rater (`restore`). A session that ends
on its own (expired, revoked, the rater deactivated or locked out) ends on the login page with
the reason shown (`end_session`), so input that arrives then does not vanish unexplained; a
restored session says so (`RESTORED`), since input made while the page reconnected is lost.
After a restart the page's script starts a run itself once reconnected (layout.reconnect_button).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import streamlit as st

from base_models.errors import ArtalignError
from labeling_app.app.settings import AppSettings
from labeling_app.app.text import plain
from labeling_app.store import AuthError, Store, StoreError

RATER = "artalign_rater"
SERVED = "artalign_served"
PENDING = "artalign_pending"
FLASH = "artalign_flash"
BATCH = "artalign_batch"
TOKEN = "artalign_session_token"
ENDED = "artalign_session_ended"
SESSION_PARAM = "session"  # the URL query parameter holding the session token
RESTORED = (
    "You are still logged in (the page was reloaded or the server restarted). A click or key "
    "press made while it reconnected was not saved"
)
TASK_ACTIONS = ("submit", "skip", "undo")

# Input on a task that has been served for less than this is dropped (a double click's second
# click, a key held down): far shorter than anyone takes to look at two images.
INPUT_GRACE_SECONDS = 0.4


@dataclass(frozen=True)
class Served:
    """The task on screen: the store's Task, its client token, and when it was shown."""

    task: Any
    token: str
    served_at: float


def open_store(settings: AppSettings) -> Store:
    """A connection for this script run (sqlite connections must stay on one thread)."""
    try:
        return Store(settings.db)
    except (StoreError, ArtalignError, OSError) as e:
        st.error(f"Cannot open the label store {plain(settings.db)}: {plain(e)}")
        st.stop()
        raise  # st.stop raises; this keeps type checkers calm


def current_rater() -> Any | None:
    """The logged-in Rater, or None."""
    return st.session_state.get(RATER)


def log_in(store: Store, rater: Any) -> None:
    """Remember the rater for this browser session, and in the URL a new session token that
    a reload or a restarted server accepts; forget anything of a previous rater."""
    token = store.open_session(rater)
    _forget()
    st.session_state[RATER] = rater
    st.session_state[TOKEN] = token
    st.query_params[SESSION_PARAM] = token


def restore(store: Store) -> Any | None:
    """The logged-in Rater: from this browser session, else from the URL's session token
    (a reload, a restarted server); None if neither. A token the store refuses ends the
    session with the reason (`end_session`)."""
    rater = current_rater()
    token = st.query_params.get(SESSION_PARAM)
    if rater is not None or not token:
        return rater
    try:
        rater = store.session_rater(token)
    except AuthError as e:  # expired, revoked, unknown; or the rater deactivated, locked out
        end_session(f"You are logged out: {e}")
        return None
    st.session_state[RATER] = rater
    st.session_state[TOKEN] = token
    # After a server restart the page reconnects without a run; the page's script then starts
    # this one (the hidden reconnect button), and input made while it reconnected is lost.
    flash("warning", RESTORED + (": answer the task on screen." if rater.role != "admin" else "."))
    return rater


def log_out(store: Store | None = None) -> None:
    """Forget the rater, their session token in the URL and everything served to them; with
    `store` (the Log out button), also revoke the token, so a copy of the link is useless."""
    token = st.session_state.get(TOKEN) or st.query_params.get(SESSION_PARAM)
    _forget()
    st.query_params.pop(SESSION_PARAM, None)
    if store is not None and token:
        store.close_session(token)


def end_session(reason: str) -> None:
    """Log out without the rater asking; the login page shows `reason` until they log in."""
    log_out()
    st.session_state[ENDED] = reason


def ended_reason(clear: bool = False) -> str | None:
    """Why the last session ended on its own (None if it did not); `clear`: forget it."""
    if clear:
        return st.session_state.pop(ENDED, None)
    return st.session_state.get(ENDED)


def _forget() -> None:
    for key in (RATER, TOKEN, ENDED, SERVED, PENDING, FLASH, BATCH, "page", "batch_choice"):
        st.session_state.pop(key, None)


def flash(kind: str, message: str) -> None:
    """A message (kind: success, info, warning, error) shown once on the next run."""
    st.session_state.setdefault(FLASH, []).append((kind, message))


_TOAST_ICONS = {"success": "✅", "info": "ℹ️", "warning": "⚠️", "error": "🚨"}


def show_flash(toast: bool = False) -> None:
    """Show and clear the queued messages: as notices in the page, or (`toast`) floating over
    it, so that they never push the task's buttons down under the mouse."""
    for kind, message in st.session_state.pop(FLASH, []):
        if toast:
            duration = "short" if kind in ("success", "info") else "long"
            st.toast(plain(message), icon=_TOAST_ICONS[kind], duration=duration)
        else:
            getattr(st, kind)(plain(message))


def served() -> Served | None:
    """The task on screen, if any."""
    return st.session_state.get(SERVED)


def serve(store: Store, settings: AppSettings, rater: Any) -> Served | None:
    """The task on screen, or a freshly served one (locked to this rater) with a new token.

    A rater the store refuses (deactivated or locked out since logging in) is logged out.
    """
    current = served()
    if current is not None:
        return current
    try:
        task = store.next_task(
            rater.id,
            batch_id=st.session_state.get(BATCH),
            lock_seconds=settings.lock_seconds,
            gold_rate=settings.gold_rate,
            order=settings.order,
        )
    except AuthError as e:  # deactivated or locked out since logging in
        end_session(f"You are logged out: {e}")
        st.rerun()  # to the login page, which says why
    if task is None:
        return None
    current = Served(task=task, token=secrets.token_hex(16), served_at=time.time())
    st.session_state[SERVED] = current
    return current


def set_batch(batch_id: int | None) -> None:
    """Label from one batch (None: any open batch).

    A task on screen from another batch leaves the screen; it stays open for this rater (and
    comes back first when they return to it) until its lock runs out.
    """
    st.session_state[BATCH] = batch_id
    current = served()
    if current is not None and batch_id is not None and current.task.batch_id != batch_id:
        st.session_state.pop(SERVED, None)


# ----------------------------------------------------------------------------- callbacks


def queue(action: str, **fields: Any) -> None:
    """Queue an action for the next run (button callbacks call this), with its arrival time."""
    st.session_state.setdefault(PENDING, []).append((action, {**fields, "at": time.time()}))


def queue_answer(current: Served, answer: dict[str, Any]) -> None:
    """Queue the answer to the task that was on screen when its button was drawn."""
    queue(
        "submit",
        assignment_id=current.task.assignment_id,
        token=current.token,
        answer=answer,
        seconds=round(time.time() - current.served_at, 3),
    )


def queue_skip(current: Served) -> None:
    """Queue skipping the task that was on screen."""
    queue("skip", assignment_id=current.task.assignment_id, token=current.token)


def queue_undo(token: str | None) -> None:
    """Queue undoing this rater's last judgment, bound to the task on screen (`token`)."""
    queue("undo", token=token)


def apply_pending(store: Store, rater: Any) -> None:
    """Apply the queued actions in order; each store call commits before the page moves on.

    Task actions carry the token of the task that was on screen when their button was drawn;
    one whose task has left the screen is a stale second click (its first click was applied,
    or the rater moved on) and is dropped, and so is one that arrived less than
    INPUT_GRACE_SECONDS after its task was served. A repeated token would be stored once anyway.
    """
    for action, f in st.session_state.pop(PENDING, []):
        current = served()
        if action in TASK_ACTIONS:
            if f["token"] != (current.token if current else None):
                continue
            if current is not None and f["at"] - current.served_at < INPUT_GRACE_SECONDS:
                continue
        try:
            if action == "submit":
                store.submit(
                    f["assignment_id"],
                    rater.id,
                    f["answer"],
                    client_token=f["token"],
                    seconds=f["seconds"],
                )
                st.session_state.pop(SERVED, None)
            elif action == "skip":
                store.skip(f["assignment_id"], rater.id)
                st.session_state.pop(SERVED, None)
            elif action == "undo":
                task_id = store.undo_last(rater.id)
                if task_id is None:
                    flash("info", "Nothing to undo.")
                else:
                    # Serve again: the store reopened the undone task for this rater.
                    st.session_state.pop(SERVED, None)
                    flash("info", "Undid your last answer or skip: that task is on screen again.")
            elif action == "batch_done":  # the store checks the rater's role in the database
                store.mark_batch_done(f["batch_id"], done=f["done"], actor=rater)
            elif action == "unlock":
                store.unlock(f["rater_id"], actor=rater)
        except (StoreError, ArtalignError) as e:
            # e.g. the lock expired and another rater has the task: move on to the next one
            if action in ("submit", "skip"):
                st.session_state.pop(SERVED, None)
            flash("warning", f"Not saved: {e}")
