"""Store security: password hashing, lockout, invites, and image paths that try to escape."""

from __future__ import annotations

import os
import sqlite3

import pytest

from labeling_app.store import AuthError, Store, StoreError
from tests.labeling_app.conftest import PASSWORDS


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_passwords_are_scrypt_hashed_with_their_own_salt(store_env):
    rows = sqlite3.connect(store_env.db).execute("SELECT name, password_hash FROM rater").fetchall()
    hashes = dict(rows)
    for name, password in PASSWORDS.items():
        assert hashes[name].startswith("scrypt$") and password not in hashes[name]
    salts = {h.split("$")[4] for h in hashes.values()}
    assert len(salts) == len(hashes)


def test_login_ok_wrong_and_unknown(store, alice):
    assert store.login("alice", PASSWORDS["alice"]).id == alice.id
    with pytest.raises(AuthError, match="wrong name or password"):
        store.login("alice", "nope")
    with pytest.raises(AuthError, match="wrong name or password"):  # same: no user probing
        store.login("mallory", "nope")


def test_lockout_after_n_failures_then_unlock(store, alice):
    for _ in range(store.max_failures):
        with pytest.raises(AuthError):
            store.login("alice", "guess")
    with pytest.raises(AuthError, match="locked"):
        store.login("alice", PASSWORDS["alice"])  # even the right password
    assert store.rater_by_name("alice").failed_logins == store.max_failures
    store.unlock(alice.id)
    assert store.login("alice", PASSWORDS["alice"]).id == alice.id


def test_success_resets_the_failure_count(store):
    for _ in range(store.max_failures - 1):
        with pytest.raises(AuthError):
            store.login("bob", "guess")
    store.login("bob", PASSWORDS["bob"])
    with pytest.raises(AuthError, match="wrong name or password"):
        store.login("bob", "guess")  # counting starts again: not locked
    assert store.rater_by_name("bob").failed_logins == 1


def test_lockout_expires(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "a.db", create=True, clock=clock, max_failures=2, lockout_seconds=60)
    store.add_rater("r", "secret-1")
    for _ in range(2):
        with pytest.raises(AuthError):
            store.login("r", "bad")
    with pytest.raises(AuthError, match="locked"):
        store.login("r", "secret-1")
    assert store.rater_by_name("r").locked_until == clock.t + 60
    clock.t += 61
    assert store.login("r", "secret-1").name == "r"


def test_invite_is_single_use_and_expires(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "i.db", create=True, clock=clock)
    token = store.make_invite("carol", ttl_seconds=100)
    with pytest.raises(AuthError):
        store.login("carol", "anything")  # no password until the invite is redeemed
    rid = store.redeem_invite(token, "carol-pass")
    assert store.login("carol", "carol-pass").id == rid
    with pytest.raises(AuthError, match="already used"):
        store.redeem_invite(token, "other-pass")
    late = store.make_invite("dave", role="admin", ttl_seconds=100)
    clock.t += 101
    with pytest.raises(AuthError, match="expired"):
        store.redeem_invite(late, "dave-pass")  # said before the password is looked at
    assert store.rater_by_name("dave").role == "admin"
    with pytest.raises(AuthError, match="not valid"):
        store.redeem_invite("made-up-token", "x")
    db_text = (tmp_path / "i.db").read_bytes()
    assert token.encode() not in db_text  # only the token's hash is stored


def test_rater_names_and_roles_checked(store):
    with pytest.raises(StoreError, match="exists"):
        store.add_rater("alice", "x-long-pass")
    with pytest.raises(StoreError, match="role"):
        store.add_rater("eve", "x-long-pass", role="root")
    with pytest.raises(StoreError, match="name"):
        store.add_rater("  ", "x-long-pass")


@pytest.mark.parametrize(
    "crafted",
    [
        "../labels.db",
        "../../etc/passwd",
        "/etc/passwd",
        "ab/../../x.png",
        "ab\\..\\x",
        "a\x00b",
        "",
    ],
)
def test_crafted_image_paths_are_rejected(store, crafted):
    with pytest.raises(StoreError):
        store.resolve_image_path(crafted)


def test_symlink_out_of_the_images_folder_is_rejected(store, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    link = store.images_dir / "zz"
    os.symlink(tmp_path, link)
    with pytest.raises(StoreError, match="escapes"):
        store.resolve_image_path("zz/secret.txt")


def test_crafted_path_in_the_database_is_rejected(store_env):
    store = store_env.store
    image_id = store.tasks()[0].image_ids[0]
    conn = sqlite3.connect(store_env.db)
    conn.execute("UPDATE image SET path = '../../../../etc/passwd' WHERE id = ?", (image_id,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="escapes"):
        store.image_path(image_id)
