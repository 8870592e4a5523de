"""Raters, passwords, lockout and invites.

Passwords are hashed with scrypt (hashlib, a per-rater random salt, parameters stored with the
hash). After `max_failures` wrong passwords in a row an account is locked for
`lockout_seconds`; an admin can unlock it. Invite tokens are single-use, expire, and only
their SHA-256 is stored.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from labeling_app.store.records import ROLES, AuthError, Rater, StoreError

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
_GENERIC = "unknown user or wrong password"


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash` (hex) for `password` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` hashes to `stored` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    """A hash that unknown names are checked against, so they cost the time of a known one.

    Made once, on the first login of the process (whatever the name), not at import: importing
    the store, as `artalign --help` does, should not spend a scrypt hash.
    """
    return hash_password(secrets.token_hex(8))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password:
        raise StoreError("a password must be a non-empty string")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}; use 'rater' or 'admin'")


_RATER_COLS = "id, name, role, active, failed_logins, locked_until, password_hash IS NOT NULL"


def rater_from_row(row) -> Rater:
    return Rater(
        id=row[0],
        name=row[1],
        role=row[2],
        active=bool(row[3]),
        failed_logins=row[4],
        locked_until=row[5],
        has_password=bool(row[6]),
    )


class RaterMixin:
    """The rater and login part of `Store` (uses its `_write`, `_conn` and `_now`)."""

    max_failures: int
    lockout_seconds: float

    def add_rater(self, name: str, password: str | None = None, role: str = "rater") -> int:
        """Create a rater (no password: they must redeem an invite); return the id."""
        name = (name or "").strip() if isinstance(name, str) else ""
        if not name:
            raise StoreError("a rater needs a non-empty name")
        _check_role(role)
        if password is not None:
            _check_password(password)
        hashed = hash_password(password) if password is not None else None
        with self._write() as c:
            if c.execute("SELECT 1 FROM rater WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"a rater named {name!r} exists; pick another name")
            cur = c.execute(
                "INSERT INTO rater (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, role, hashed, self._now()),
            )
            return cur.lastrowid

    def rater(self, rater_id: int) -> Rater:
        """One rater by id; StoreError if unknown."""
        row = self._row(f"SELECT {_RATER_COLS} FROM rater WHERE id = ?", (rater_id,))
        if row is None:
            raise StoreError(f"no rater with id {rater_id}")
        return rater_from_row(row)

    def rater_by_name(self, name: str) -> Rater:
        """One rater by name; StoreError if unknown."""
        row = self._row(f"SELECT {_RATER_COLS} FROM rater WHERE name = ?", (name,))
        if row is None:
            raise StoreError(f"no rater named {name!r}; add one with `artalign label users add`")
        return rater_from_row(row)

    def raters(self) -> list[Rater]:
        """Every rater, in id order."""
        rows = self._rows(f"SELECT {_RATER_COLS} FROM rater ORDER BY id")
        return [rater_from_row(r) for r in rows]

    def make_invite(self, name: str, role: str = "rater", ttl_seconds: float = 7 * 86400) -> str:
        """A single-use token that lets `name` set a password (the rater is created if new).

        An invite for an existing rater works as a password reset; their role is kept.
        """
        _check_role(role)
        if ttl_seconds <= 0:
            raise StoreError(f"an invite needs a positive lifetime, got {ttl_seconds} s")
        token = secrets.token_urlsafe(24)
        with self._write() as c:
            row = c.execute("SELECT id FROM rater WHERE name = ?", (name,)).fetchone()
            rater_id = row[0] if row else self.add_rater(name, None, role)
            now = self._now()
            c.execute(
                "INSERT INTO invite (token_hash, rater_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash(token), rater_id, now, now + ttl_seconds),
            )
        return token

    def redeem_invite(self, token: str, password: str) -> int:
        """Set the invited rater's password, burn the token; return the rater id."""
        _check_password(password)
        hashed = hash_password(password)
        with self._write() as c:
            row = c.execute(
                "SELECT id, rater_id, expires_at, used_at FROM invite WHERE token_hash = ?",
                (token_hash(str(token)),),
            ).fetchone()
            if row is None or row[3] is not None or row[2] <= self._now():
                raise AuthError("this invite link is invalid, used or expired; ask an admin")
            c.execute("UPDATE invite SET used_at = ? WHERE id = ?", (self._now(), row[0]))
            c.execute(
                "UPDATE rater SET password_hash = ?, failed_logins = 0, locked_until = NULL "
                "WHERE id = ?",
                (hashed, row[1]),
            )
            return row[1]

    def login(self, name: str, password: str) -> Rater:
        """The rater if `password` is right; AuthError if wrong, unknown, inactive or locked."""
        dummy = _dummy_hash()
        row = self._row(
            "SELECT id, password_hash, locked_until, active FROM rater WHERE name = ?", (name,)
        )
        if row is None or row[1] is None:
            verify_password(str(password), dummy)
            raise AuthError(_GENERIC)
        rater_id, stored, locked_until, active = row
        now = self._now()
        if locked_until is not None and locked_until > now:
            raise AuthError(
                f"account {name!r} is locked after {self.max_failures} wrong passwords; "
                f"try again in {int(locked_until - now) + 1} s or ask an admin to unlock it"
            )
        ok = verify_password(str(password), stored)
        with self._write() as c:
            if ok:
                c.execute(
                    "UPDATE rater SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                    (rater_id,),
                )
            else:
                fails = (
                    c.execute(
                        "SELECT failed_logins FROM rater WHERE id = ?", (rater_id,)
                    ).fetchone()[0]
                    + 1
                )
                lock = now + self.lockout_seconds if fails >= self.max_failures else None
                c.execute(
                    "UPDATE rater SET failed_logins = ?, locked_until = ? WHERE id = ?",
                    (0 if lock else fails, lock, rater_id),
                )
        if not ok:
            raise AuthError(_GENERIC)
        if not active:
            raise AuthError(f"account {name!r} is deactivated; ask an admin")
        return self.rater(rater_id)

    def unlock(self, rater_id: int) -> None:
        """Clear a lockout and the failure count."""
        with self._write() as c:
            cur = c.execute(
                "UPDATE rater SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                (rater_id,),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rater with id {rater_id}")

    def set_active(self, rater_id: int, active: bool) -> None:
        """Deactivate (or reactivate) a rater: a deactivated rater cannot log in or be served."""
        with self._write() as c:
            cur = c.execute("UPDATE rater SET active = ? WHERE id = ?", (int(active), rater_id))
            if cur.rowcount == 0:
                raise StoreError(f"no rater with id {rater_id}")
