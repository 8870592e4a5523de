"""The admin page: progress per batch, rater throughput and gold accuracy, agreement, invites.

Only shown to raters with role "admin": main.py checks the session's role, and `render` asks the
store again (a demoted, deactivated or locked-out admin is logged out). Everything here is read
with the admin as the store's viewer, and every admin action passes them as its `actor`.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from labeling_app.agreement import AgreementReport, agreement_report
from labeling_app.app import session
from labeling_app.app.labeling import DEFAULT_INSTRUCTIONS
from labeling_app.app.text import plain
from labeling_app.store import AuthError, Store, StoreError
from labeling_app.store.auth import minutes_left
from labeling_app.store.records import MAX_INSTRUCTIONS

ALL = "All batches"


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _toggle_done(batch_id: int, key: str) -> None:
    session.queue("batch_done", batch_id=batch_id, done=bool(st.session_state[key]))


def _progress_section(store: Store, viewer: Any, batches: list[Any]) -> None:
    st.subheader("Progress per batch")
    if not batches:
        st.info("No batches yet: make one with `artalign label batch`.")
        return
    rows = []
    for batch in batches:
        p = store.progress(viewer, batch_id=batch.id)
        rows.append(
            {
                "batch": batch.name,
                "tasks": p["tasks"],
                "judgments needed": p["needed"],
                "judgments done": p["done"],
                "complete": f"{100 * p['done'] / max(1, p['needed']):.0f}%",
                "gold tasks": p["gold_tasks"],
                "gold judgments": p["gold_judgments"],
                "served now": p["locked"],
                "marked done": bool(batch.done),
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption("Mark a batch done to stop serving its tasks:")
    cols = st.columns(min(4, len(batches)))
    for i, batch in enumerate(batches):
        key = f"done_{batch.id}_{int(batch.done)}"
        cols[i % len(cols)].toggle(
            f"{plain(batch.name)} done",
            value=bool(batch.done),
            key=key,
            on_change=_toggle_done,
            args=(batch.id, key),
        )


def _instructions_section(store: Store, viewer: Any, batches: list[Any]) -> None:
    st.subheader("Instructions for raters")
    st.caption(
        'Shown above every task of the batch, as plain text (what "better" means, tie '
        "versus both bad). Empty: the default, " + plain(DEFAULT_INSTRUCTIONS)
    )
    for batch in batches:
        with st.form(f"instructions_{batch.id}"):
            text = st.text_area(
                f"Batch {plain(batch.name)}",
                value=batch.instructions,
                max_chars=MAX_INSTRUCTIONS,
                key=f"instructions_text_{batch.id}",
            )
            saved = st.form_submit_button(f"Save instructions of {plain(batch.name)}")
        if saved:
            try:
                store.set_batch_instructions(batch.id, text, actor=viewer)
            except (StoreError, AuthError) as e:
                st.error(f"Instructions not saved: {plain(e)}")
            else:
                st.success(f"Instructions of batch {plain(batch.name)} saved.")


def _raters_section(
    store: Store, viewer: Any, report: AgreementReport, batch_id: int | None, with_gold: bool
) -> None:
    st.subheader("Raters")
    gold = store.gold_accuracy()
    per_rater = report.per_rater
    flagged = set(report.flagged)
    now = time.time()
    rows = []
    for r in store.raters():
        t = per_rater.get(r.id, {})
        # the same call the rater's Label page makes, so both show the same number
        left = store.remaining_tasks(viewer, r.id, include_gold=with_gold)
        correct, answered = gold.get(r.id, (0, 0))
        rows.append(
            {
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "judgments": t.get("n", 0),
                "remaining tasks": left.get(batch_id, 0)
                if batch_id is not None
                else sum(left.values()),
                "median seconds": _round(t.get("median_seconds"), 2),
                "per hour": _round(t.get("per_hour"), 0),
                "gold answered (all batches)": answered,
                "gold accuracy": _round(correct / answered, 3) if answered else None,
                "agrees with nobody": r.id in flagged,
                "locked out for": minutes_left(r.locked_until - now)
                if r.locked_until and r.locked_until > now
                else "",
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(
        "Remaining tasks: what each rater may still be served in open batches "
        + ("(gold questions included)." if with_gold else "(no gold questions: gold rate 0).")
    )
    for r in store.raters():
        if r.locked_until and r.locked_until > now:
            st.button(
                f"Unlock {plain(r.name)}",
                key=f"unlock_{r.id}_{r.locked_until}",
                on_click=session.queue,
                args=("unlock",),
                kwargs={"rater_id": r.id},
            )


def _agreement_section(report: AgreementReport, names: dict[int, str]) -> None:
    st.subheader("Agreement")
    a, b, c = st.columns(3)
    a.metric("Krippendorff α, pairs (nominal)", _fmt(report.alpha_pairs))
    b.metric("Krippendorff α, ranks (ordinal)", _fmt(report.alpha_ranks))
    c.metric("α, pairs implied by ranks", _fmt(report.alpha_implied_pairs))
    st.caption(
        "Units judged by two or more raters: "
        + ", ".join(f"{k} {v}" for k, v in report.n_units.items())
    )
    if report.kappa:
        rows = [
            {
                "rater a": names.get(ra, ra),
                "rater b": names.get(rb, rb),
                "Cohen κ": k,
                "shared units": n,
            }
            for (ra, rb), (k, n) in sorted(report.kappa.items())
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.caption("No two raters share a judged unit yet.")
    if report.flagged:
        st.error(
            "Raters who agree with nobody: "
            + ", ".join(plain(names.get(r, str(r))) for r in report.flagged)
        )


def _invite_section(store: Store, viewer: Any) -> None:
    st.subheader("Invite a rater")
    with st.form("invite_rater", clear_on_submit=True):
        name = st.text_input("Name", key="admin_invite_name")
        role = st.selectbox("Role", ["rater", "admin"], key="admin_invite_role")
        submitted = st.form_submit_button("Make invite link")
    if submitted and name.strip():
        try:
            token = store.make_invite(name.strip(), role=role, actor=viewer)
        except (StoreError, AuthError) as e:
            st.error(f"No invite made: {plain(e)}")
            return
        st.success("Single-use link (valid 7 days); send it to the rater:")
        st.code(f"?invite={token}", language=None)


def render(store: Store, viewer: Any, gold: bool = True) -> None:
    """Draw the admin page for `viewer` (role admin); `gold`: the server serves gold tasks,
    so the raters' remaining counts include them."""
    st.title("Admin")
    try:
        viewer = store.require_admin(viewer)  # the role in the database, not the session's
    except AuthError as e:
        session.log_out(store)  # revokes the session token too
        st.error(f"You are logged out: {plain(e)}")
        return
    batches = store.batches()
    _progress_section(store, viewer, batches)
    scopes = [ALL] + [f"{b.id}: {b.name}" for b in batches]
    scope = st.selectbox("Raters and agreement over", scopes, key="admin_scope")
    batch_id = None if scope == ALL else int(scope.split(":", 1)[0])
    names = {r.id: r.name for r in store.raters()}
    report = agreement_report(store.judgments(viewer, batch_id=batch_id))
    _raters_section(store, viewer, report, batch_id, gold)
    _agreement_section(report, names)
    _instructions_section(store, viewer, batches)
    _invite_section(store, viewer)
