"""Log in by name and password, or redeem a single-use invite link (`?invite=TOKEN`).

A failed login shows the store's one message, whatever went wrong (no probing for names). An
invite link is checked before the password form: a used or expired link says so at once.
When a session ended on its own (expired, or the account locked out or deactivated), the login
page says why (`session.end_session`), so no key press or click lands here unexplained.
"""

from __future__ import annotations

import streamlit as st

from base_models.errors import ArtalignError
from labeling_app.app import session
from labeling_app.app.text import plain
from labeling_app.store import AuthError, Store, StoreError
from labeling_app.store.auth import INVITE_PROBLEMS, check_password


def render(store: Store) -> None:
    """The login page; on success the rater is in the session and the page reruns."""
    st.title("artalign labeling")
    token = st.query_params.get("invite")
    if token:
        _invite_form(store, token)
        return
    reason = session.ended_reason()
    if reason:
        st.error(plain(reason))
    with st.form("login"):
        name = st.text_input("Name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        session.ended_reason(clear=True)  # answered by this attempt
        try:
            rater = store.login(name.strip(), password)
            session.log_in(store, rater)
        except AuthError as e:  # one message for every failure (store.auth.LOGIN_FAILED)
            st.error(f"Login failed: {plain(e)}")
            return
        st.rerun()


def _invite_form(store: Store, token: str) -> None:
    state = store.invite_state(token)
    if state != "valid":
        st.error(f"This invite link cannot be used: {INVITE_PROBLEMS[state]}")
        if st.button("Go to the login page", key="invite_to_login"):
            st.query_params.clear()
            st.rerun()
        return
    st.subheader("Welcome! Choose a password to finish your account.")
    with st.form("invite"):
        password = st.text_input("New password", type="password", key="invite_password")
        again = st.text_input("Repeat password", type="password", key="invite_again")
        submitted = st.form_submit_button("Set password and log in")
    if not submitted:
        return
    try:
        check_password(password)  # the store's rule, shared with the CLI
    except StoreError as e:
        st.error(f"Choose another password: {plain(e)}")
        return
    if password != again:
        st.error("The two passwords differ.")
        return
    try:
        rater_id = store.redeem_invite(token, password)
    except (AuthError, StoreError, ArtalignError) as e:
        st.error(f"This invite link cannot be used: {plain(e)}")
        return
    rater = store.rater(rater_id)
    st.query_params.clear()  # the token is burnt; a reload must not try it again
    session.log_in(store, rater)
    st.rerun()
