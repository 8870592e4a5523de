"""Session tokens (issue 23 item 3): a login that survives a reload or a server restart.

The store issues a token, keeps only its SHA-256 with an expiry, accepts it until it expires or
the rater logs out, and refuses it for a deactivated or locked-out rater; a version-2 store
gains the table when it is opened.
"""

from __future__ import annotations

import sqlite3

import pytest

from labeling_app.store import SYSTEM, AuthError, Store
from labeling_app.store.auth import SESSION_PROBLEMS, SESSION_SECONDS, token_hash
from labeling_app.store.schema import SCHEMA_VERSION


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clocked(store_env):
    """The fixture's store opened again with a clock the test moves."""
    clock = Clock()
    with Store(store_env.db, clock=clock) as store:
        yield store, clock


def test_session_token_names_its_rater_and_only_its_hash_is_stored(store_env, alice):
    token = store_env.store.open_session(alice)
    with Store(store_env.db) as restarted:  # another process: a restarted server
        assert restarted.session_rater(token) == alice
    with sqlite3.connect(store_env.db) as c:
        rows = c.execute("SELECT token_hash, rater_id FROM login_session").fetchall()
    assert rows == [(token_hash(token), alice.id)]
    assert store_env.store.open_session(alice) != token  # a fresh token per login


def test_session_expires(clocked, alice):
    store, clock = clocked
    token = store.open_session(alice)
    clock.t += SESSION_SECONDS - 1
    assert store.session_rater(token) == alice
    clock.t += 1
    with pytest.raises(AuthError, match="your session expired; log in again"):
        store.session_rater(token)
    short = store.open_session(alice, ttl_seconds=60)
    clock.t += 60
    with pytest.raises(AuthError, match="expired"):
        store.session_rater(short)


def test_logging_out_revokes_only_that_session(store, alice):
    token, other = store.open_session(alice), store.open_session(alice)
    store.close_session(token)
    store.close_session(token)  # twice: no error
    with pytest.raises(AuthError, match=SESSION_PROBLEMS["revoked"]):
        store.session_rater(token)
    assert store.session_rater(other) == alice


@pytest.mark.parametrize("token", ["not-a-token", "", None])
def test_unknown_token_is_refused(store, alice, token):
    store.open_session(alice)
    with pytest.raises(AuthError, match="log in again"):
        store.session_rater(token)


def test_session_of_a_deactivated_or_locked_out_rater_is_refused(store, alice, bob):
    token_a, token_b = store.open_session(alice), store.open_session(bob)
    store.set_active(alice.id, False)
    with pytest.raises(AuthError, match="deactivated"):
        store.session_rater(token_a)
    with pytest.raises(AuthError, match="deactivated"):
        store.open_session(alice)
    for _ in range(store.max_failures):
        with pytest.raises(AuthError):
            store.login("bob", "wrong-guess")
    with pytest.raises(AuthError, match="locked out"):
        store.session_rater(token_b)
    with pytest.raises(AuthError, match="locked out"):
        store.open_session(bob)
    store.unlock(bob.id)
    store.set_active(alice.id, True)
    assert store.session_rater(token_a).id == alice.id  # still within its lifetime
    assert store.session_rater(token_b).id == bob.id


def test_open_session_needs_a_rater(store):
    with pytest.raises(AuthError, match="Rater returned by login"):
        store.open_session(SYSTEM)
    with pytest.raises(AuthError, match="Rater returned by login"):
        store.open_session(1)


def test_version_2_store_is_migrated_to_hold_sessions(store_env, alice):
    store_env.store.close()
    with sqlite3.connect(store_env.db) as c:  # what a version-2 store looks like
        c.execute("DROP TABLE login_session")
        c.execute("UPDATE schema_version SET version = 2")
    with Store(store_env.db) as old:
        with sqlite3.connect(store_env.db) as c:
            assert c.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 3
        assert SCHEMA_VERSION == 3
        assert old.next_task(alice.id).task_id == 1  # the old content is still served
        token = old.open_session(alice)
        assert old.session_rater(token) == alice
