"""Log in by name and password, or redeem a single-use invite link (`?invite=TOKEN`)."""

from __future__ import annotations

import streamlit as st

from base_models.errors import ArtalignError
from labeling_app.app import session
from labeling_app.store import AuthError, Store, StoreError

MIN_PASSWORD = 8


def render(store: Store) -> None:
    """The login page; on success the rater is in the session and the page reruns."""
    st.title("artalign labeling")
    token = st.query_params.get("invite")
    if token:
        _invite_form(store, token)
        return
    with st.form("login"):
        name = st.text_input("Name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        try:
            rater = store.login(name.strip(), password)
        except AuthError as e:  # wrong password, unknown name, locked out: the store's words
            st.error(f"Login failed: {e}")
            return
        session.log_in(rater)
        st.rerun()


def _invite_form(store: Store, token: str) -> None:
    st.subheader("Welcome! Choose a password to finish your account.")
    with st.form("invite"):
        password = st.text_input("New password", type="password", key="invite_password")
        again = st.text_input("Repeat password", type="password", key="invite_again")
        submitted = st.form_submit_button("Set password and log in")
    if not submitted:
        return
    if len(password) < MIN_PASSWORD:
        st.error(f"Use at least {MIN_PASSWORD} characters.")
        return
    if password != again:
        st.error("The two passwords differ.")
        return
    try:
        rater_id = store.redeem_invite(token, password)
    except (AuthError, StoreError, ArtalignError) as e:
        st.error(f"This invite link cannot be used: {e}")
        return
    rater = next(r for r in store.raters() if r.id == rater_id)
    st.query_params.clear()  # the token is burnt; a reload must not try it again
    session.log_in(rater)
    st.rerun()
