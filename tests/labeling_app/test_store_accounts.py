"""Accounts (issue 23): atomic lockout, one login-failure message, admin checks on every admin
action, locked or deactivated raters stopped mid-session, name and password rules, invites."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from labeling_app.store import AuthError, Store, StoreError
from labeling_app.store import auth as auth_module
from labeling_app.store.auth import LOGIN_FAILED, check_name, check_password
from tests.labeling_app.conftest import PASSWORDS


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _lock_out(store: Store, name: str) -> None:
    for _ in range(store.max_failures):
        with pytest.raises(AuthError):
            store.login(name, "wrong-guess")


# --- 10: check and count in one transaction ------------------------------------------------


def test_parallel_wrong_guesses_stop_at_the_limit(store_env):
    db, n = store_env.db, 16
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def guess() -> None:
        with Store(db) as mine:
            barrier.wait()
            try:
                mine.login("bob", "wrong-guess")
            except AuthError:
                return
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=guess) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    bob = store_env.store.rater_by_name("bob")
    assert bob.failed_logins == store_env.store.max_failures
    assert bob.locked_until is not None and bob.locked_until > store_env.store._now()
    with pytest.raises(AuthError):
        store_env.store.login("bob", PASSWORDS["bob"])  # locked: the right password is refused


def test_lock_expiry_starts_the_count_afresh(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "a.db", create=True, clock=clock, max_failures=2, lockout_seconds=60)
    store.add_rater("r", "secret-1")
    _lock_out(store, "r")
    clock.t += 61
    with pytest.raises(AuthError):
        store.login("r", "bad-guess")
    assert store.rater_by_name("r").failed_logins == 1  # one new failure: not locked again
    assert store.login("r", "secret-1").name == "r"


# --- 11: one message, one hash, whatever went wrong ------------------------------------------


def test_every_failed_login_says_the_same_and_costs_one_hash(store, alice, bob, monkeypatch):
    store.set_active(alice.id, False)
    _lock_out(store, "bob")
    calls = []
    real = auth_module.verify_password
    monkeypatch.setattr(
        auth_module, "verify_password", lambda pw, h: calls.append(1) or real(pw, h)
    )
    cases = [
        ("mallory", "whatever-1"),  # unknown name
        ("admin", "wrong-guess"),  # wrong password
        ("bob", PASSWORDS["bob"]),  # locked, right password
        ("alice", PASSWORDS["alice"]),  # deactivated, right password
    ]
    for name, password in cases:
        with pytest.raises(AuthError) as info:
            store.login(name, password)
        assert str(info.value) == LOGIN_FAILED
    assert len(calls) == len(cases)  # a password hash for every attempt, unknown names too


# --- 12: admin actions check the actor in the database ---------------------------------------


def _admin_actions(store: Store, bob_id: int, batch_id: int):
    return {
        "unlock": lambda actor: store.unlock(bob_id, actor=actor),
        "set_active": lambda actor: store.set_active(bob_id, False, actor=actor),
        "mark_batch_done": lambda actor: store.mark_batch_done(batch_id, actor=actor),
        "make_invite": lambda actor: store.make_invite("zoe", actor=actor),
        "add_rater": lambda actor: store.add_rater("root2", "a-long-pass", "admin", actor=actor),
    }


@pytest.mark.parametrize(
    "action", ["unlock", "set_active", "mark_batch_done", "make_invite", "add_rater"]
)
@pytest.mark.parametrize("how", ["demoted", "deactivated", "rater"])
def test_stale_or_plain_actor_cannot_do_admin_actions(store_env, action, how):
    store, admin = store_env.store, store_env.admin
    actor = store_env.alice if how == "rater" else admin  # admin: the session's cached copy
    if how == "demoted":
        with sqlite3.connect(store_env.db) as conn:
            conn.execute("UPDATE rater SET role = 'rater' WHERE id = ?", (admin.id,))
    elif how == "deactivated":
        store.set_active(admin.id, False)
    with pytest.raises(AuthError, match="admin"):
        _admin_actions(store, store_env.bob.id, store_env.batch_id)[action](actor)
    assert store.rater_by_name("bob").active
    assert not store.batch(store_env.batch_id).done
    assert "zoe" not in {r.name for r in store.raters()}


@pytest.mark.parametrize(
    "action", ["unlock", "set_active", "mark_batch_done", "make_invite", "add_rater"]
)
def test_admin_and_operator_may_do_admin_actions(store_env, action):
    actions = _admin_actions(store_env.store, store_env.bob.id, store_env.batch_id)
    actions[action](store_env.admin)
    store_env.store.close()
    with Store(store_env.db) as other:  # the operator (CLI): no account needed
        again = _admin_actions(other, store_env.bob.id, store_env.batch_id)
        if action not in ("make_invite", "add_rater"):  # those would clash with the first name
            again[action](None)


def test_require_admin_rereads_the_role(store_env):
    store = store_env.store
    assert store.require_admin(store_env.admin).id == store_env.admin.id
    store.set_active(store_env.admin.id, False)
    with pytest.raises(AuthError, match="deactivated"):
        store.require_admin(store_env.admin)


# --- 13: a rater locked out or deactivated mid-session stops working --------------------------


@pytest.mark.parametrize("how", ["locked", "deactivated"])
def test_locked_or_deactivated_rater_cannot_work(store, bob, how):
    task = store.next_task(bob.id)
    store.submit(task.assignment_id, bob.id, {"choice": "left"}, client_token="t1")
    task = store.next_task(bob.id)
    if how == "locked":
        _lock_out(store, "bob")
    else:
        store.set_active(bob.id, False)
    calls = {
        "next_task": lambda: store.next_task(bob.id),
        "submit": lambda: store.submit(
            task.assignment_id, bob.id, {"choice": "left"}, client_token="t2"
        ),
        "skip": lambda: store.skip(task.assignment_id, bob.id),
        "undo_last": lambda: store.undo_last(bob.id),
    }
    for call in calls.values():
        with pytest.raises(AuthError, match=how):
            call()
    store.unlock(bob.id)
    store.set_active(bob.id, True)
    assert store.undo_last(bob.id) is not None  # nothing was changed meanwhile


# --- 15: one rule for names and passwords ----------------------------------------------------


def test_name_and_password_rules():
    assert check_name("  rita.k_2-b ") == "rita.k_2-b"
    for bad in ["", "   ", "a" * 65, "a b", "rita<script>", "ünï", "a/b", None, 5]:
        with pytest.raises(StoreError, match="name"):
            check_name(bad)
    check_password("eight-ch")
    for bad in ["", "short", "x" * 7, "y" * 1025, None]:
        with pytest.raises(StoreError, match="password"):
            check_password(bad)


def test_store_applies_the_rules_to_every_account_path(store):
    with pytest.raises(StoreError, match="name"):
        store.add_rater("n" * 5000, "a-long-pass")
    with pytest.raises(StoreError, match="password"):
        store.add_rater("pat", "12345")
    with pytest.raises(StoreError, match="name"):
        store.make_invite("bad name")
    token = store.make_invite("pat")
    with pytest.raises(StoreError, match="password"):
        store.redeem_invite(token, "12345")
    assert store.invite_state(token) == "valid"  # a refused password does not burn the link
    store.add_rater("imported rater 7")  # judgments-only accounts (imports) keep free names
    with pytest.raises(StoreError, match="name"):
        store.add_rater("i" * 65)


# --- 16: invites --------------------------------------------------------------------------


def test_invite_for_an_existing_account_is_refused(store, alice):
    with pytest.raises(StoreError, match="exists"):
        store.make_invite("alice")
    with pytest.raises(StoreError, match="exists"):
        store.make_invite("alice", role="admin")
    assert store.rater_by_name("alice").role == "rater"


def test_invite_can_be_made_again_for_a_pending_account_with_its_role(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "i.db", create=True, clock=clock)
    first = store.make_invite("dave", role="admin", ttl_seconds=10)
    clock.t += 11
    assert store.invite_state(first) == "expired"
    with pytest.raises(StoreError, match="role"):
        store.make_invite("dave", role="rater")  # would silently keep 'admin'
    second = store.make_invite("dave", role="admin")
    assert store.rater(store.redeem_invite(second, "dave-pass")).role == "admin"


def test_redeeming_revokes_the_other_open_invites(store):
    one, two = store.make_invite("erin"), store.make_invite("erin")
    store.redeem_invite(one, "erin-pass-1")
    assert store.invite_state(one) == "used" and store.invite_state(two) == "used"
    with pytest.raises(AuthError, match="used"):
        store.redeem_invite(two, "attacker-pass")
    assert store.login("erin", "erin-pass-1").name == "erin"


def test_invite_state_names_what_is_wrong(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "i.db", create=True, clock=clock)
    token = store.make_invite("fay", ttl_seconds=100)
    assert store.invite_state(token) == "valid"
    assert store.invite_state("made-up") == "unknown"
    clock.t += 101
    assert store.invite_state(token) == "expired"
    with pytest.raises(AuthError, match="expired"):
        store.redeem_invite(token, "fay-pass-1")
