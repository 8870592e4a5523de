"""Raters, passwords, lockout, invites and who may do what.

Passwords are hashed with scrypt (hashlib, a per-rater random salt, parameters stored with the
hash). After `max_failures` wrong passwords in a row an account is locked for
`lockout_seconds` (the count is checked and raised in one write transaction, so parallel
guesses cannot pass the limit); an admin can unlock it. Every failed login raises the same
`LOGIN_FAILED` message and costs one password hash, whether the name is unknown, the password
wrong, or the account locked or deactivated. Invite tokens are single-use, expire, and only
their SHA-256 is stored; redeeming one burns every open invite of that account.

Session tokens (`open_session`, `session_rater`, `close_session`) let a logged-in browser
survive a reload or a server restart: a random token the app keeps in the page URL, of which
only the SHA-256 is stored, with an expiry (`SESSION_SECONDS`, not renewed: a token leaked
through a shared link stays useful for hours at most). Logging out revokes it. The token proves
who logged in and nothing else; the rater's active flag and lockout are read again on each use.

Login names (`check_name`) and passwords (`check_password`) follow one rule here, so the CLI
and the app share it. Raters that only hold judgments (imports, simulated raters: no password,
role rater) may keep any name of at most `MAX_NAME` characters; they cannot log in unless an
invite, which checks the name, gives them a password.

Admin actions (`add_rater`, `make_invite`, `unlock`, `set_active`, `Store.mark_batch_done`)
take `actor`: the logged-in `Rater`, whose role, active flag and lockout are read again from
the database on every call, so a demoted, deactivated or locked-out admin is refused at once.
`actor=None` (or `SYSTEM`) is the local operator: the CLI, imports and trainers, which open the
database file directly and so are its admin anyway. The app must always pass its rater.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
import secrets

from labeling_app.store.records import ROLES, SYSTEM, AuthError, Rater, StoreError

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
MAX_NAME = 64
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
_NAME = re.compile(r"[A-Za-z0-9._-]+")
LOGIN_FAILED = "wrong name or password, or the account is locked or deactivated; ask an admin"
INVITE_PROBLEMS = {
    "unknown": "this invite link is not valid (mistyped or cut short?); ask an admin for a new one",
    "used": "this invite link was already used; log in with the password set then, "
    "or ask an admin for a new link",
    "expired": "this invite link has expired; ask an admin for a new one",
}

SESSION_SECONDS = 12 * 3600
SESSION_PROBLEMS = {
    "unknown": "this session is not known to the label store (a mistyped or cut-short link, "
    "or another store); log in again",
    "expired": "your session expired; log in again",
    "revoked": "this session was ended by logging out; log in again",
}


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


def minutes_left(seconds: float) -> str:
    """A wait as people read it: whole minutes, rounded up ("1 min" at the least)."""
    return f"{max(1, math.ceil(seconds / 60))} min"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: object) -> str:
    """The login name, stripped; StoreError unless 1-64 letters, digits, `-`, `_` or `.`."""
    name = _record_name(name)
    if not _NAME.fullmatch(name):
        raise StoreError(
            f"name {name!r} may use only letters, digits, '-', '_' and '.'; pick another name"
        )
    return name


def _record_name(name: object) -> str:
    """The name of a judgments-only rater (imports): non-empty, at most MAX_NAME characters."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError("a rater needs a non-empty name")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise StoreError(f"a name has at most {MAX_NAME} characters, got {len(name)}; shorten it")
    return name


def check_password(password: object) -> str:
    """`password` if it is a string of MIN_PASSWORD to MAX_PASSWORD characters; else StoreError."""
    if not isinstance(password, str):
        raise StoreError("a password must be a string")
    if len(password) < MIN_PASSWORD:
        raise StoreError(
            f"a password needs at least {MIN_PASSWORD} characters; choose a longer one"
        )
    if len(password) > MAX_PASSWORD:
        raise StoreError(f"a password has at most {MAX_PASSWORD} characters; choose a shorter one")
    return password


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}; use 'rater' or 'admin'")


def _invite_state(row: tuple | None, now: float) -> str:
    """'unknown', 'used', 'expired' or 'valid' for an (expires_at, used_at) invite row."""
    if row is None:
        return "unknown"
    if row[1] is not None:
        return "used"
    return "expired" if row[0] <= now else "valid"


_ADMIN_SQL = "SELECT name, role, active, locked_until FROM rater WHERE id = ?"
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

    # --- who may do what -----------------------------------------------------------------
    def _refuse_unless_admin(self, row: tuple | None, what: str) -> None:
        """AuthError unless `row` is an active, unlocked admin."""
        if row is None:
            raise AuthError(f"cannot {what}: the acting account is unknown; log in again")
        name, role, active, locked_until = row
        if not active:
            raise AuthError(f"{name!r} cannot {what}: the account is deactivated; ask an admin")
        if locked_until is not None and locked_until > self._now():
            raise AuthError(f"{name!r} cannot {what}: the account is locked out; ask an admin")
        if role != "admin":
            raise AuthError(f"{name!r} cannot {what}: only an admin can; ask an admin")

    def _require_admin(self, c, actor: Rater | None, what: str) -> None:
        """Inside a write: pass the local operator (None or SYSTEM) or a database admin."""
        if actor is None or actor == SYSTEM:
            return
        if not isinstance(actor, Rater):
            raise AuthError("actor must be the Rater returned by login (None: the local operator)")
        row = c.execute(_ADMIN_SQL, (actor.id,)).fetchone()
        self._refuse_unless_admin(row, what)

    def require_admin(self, actor: Rater) -> Rater:
        """`actor` as the database has it now; AuthError unless an active, unlocked admin."""
        if actor == SYSTEM:
            return actor
        if not isinstance(actor, Rater):
            raise AuthError("actor must be the Rater returned by login")
        self._refuse_unless_admin(self._row(_ADMIN_SQL, (actor.id,)), "open the admin page")
        return self.rater(actor.id)

    def _require_working(self, c, rater_id: int) -> None:
        """Inside a write: StoreError for an unknown rater, AuthError for a deactivated or
        locked-out one (checked on every rater-facing call, not only at login)."""
        row = c.execute(
            "SELECT name, active, locked_until FROM rater WHERE id = ?", (rater_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no rater with id {rater_id}")
        self._refuse_unless_working(*row)

    def _refuse_unless_working(self, name: str, active: int, locked_until: float | None) -> None:
        """AuthError for a deactivated or locked-out rater."""
        if not active:
            raise AuthError(
                f"rater {name!r} is deactivated; ask an admin to reactivate the account"
            )
        now = self._now()
        if locked_until is not None and locked_until > now:
            raise AuthError(
                f"rater {name!r} is locked out after wrong passwords; log in again in "
                f"{minutes_left(locked_until - now)} or ask an admin to unlock the account"
            )

    # --- accounts --------------------------------------------------------------------------
    def add_rater(
        self,
        name: str,
        password: str | None = None,
        role: str = "rater",
        *,
        actor: Rater | None = None,
    ) -> int:
        """Create a rater (no password: they must redeem an invite); return the id.

        An account that can log in (a password, or role admin) needs a `check_name` name.
        `actor`: the admin doing it, None for the local operator (module docstring).
        """
        _check_role(role)
        login_account = password is not None or role == "admin"
        name = check_name(name) if login_account else _record_name(name)
        hashed = hash_password(check_password(password)) if password is not None else None
        with self._write() as c:
            self._require_admin(c, actor, "add raters")
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

    def unlock(self, rater_id: int, *, actor: Rater | None = None) -> None:
        """Clear a lockout and the failure count (`actor`: an admin, None for the operator)."""
        with self._write() as c:
            self._require_admin(c, actor, "unlock accounts")
            cur = c.execute(
                "UPDATE rater SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                (rater_id,),
            )
            if cur.rowcount == 0:
                raise StoreError(f"no rater with id {rater_id}")

    def set_active(self, rater_id: int, active: bool, *, actor: Rater | None = None) -> None:
        """Deactivate (or reactivate) a rater: a deactivated rater cannot log in or be served."""
        with self._write() as c:
            self._require_admin(c, actor, "deactivate or reactivate accounts")
            cur = c.execute("UPDATE rater SET active = ? WHERE id = ?", (int(active), rater_id))
            if cur.rowcount == 0:
                raise StoreError(f"no rater with id {rater_id}")

    # --- invites ---------------------------------------------------------------------------
    def make_invite(
        self,
        name: str,
        role: str = "rater",
        ttl_seconds: float = 7 * 86400,
        *,
        actor: Rater | None = None,
    ) -> str:
        """A single-use token that lets the new account `name` set its password.

        An invite is not a password reset: a name that has a password already is refused. A
        name still waiting on an invite (never redeemed, e.g. expired) gets a new link only
        with the role it was invited with, so a role is never silently ignored.
        """
        name = check_name(name)
        _check_role(role)
        if ttl_seconds <= 0:
            raise StoreError(f"an invite needs a positive lifetime, got {ttl_seconds} s")
        token = secrets.token_urlsafe(24)
        with self._write() as c:
            self._require_admin(c, actor, "make invites")
            row = c.execute(
                "SELECT id, role, password_hash IS NOT NULL FROM rater WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                rater_id = self.add_rater(name, None, role, actor=actor)
            elif row[2]:
                raise StoreError(
                    f"a rater named {name!r} exists and has a password; an invite is not a "
                    "password reset: pick another name"
                )
            elif row[1] != role:
                raise StoreError(
                    f"{name!r} is waiting on an invite with role {row[1]!r}; invite them again "
                    f"with role {row[1]!r}, or pick another name"
                )
            else:
                rater_id = row[0]
            now = self._now()
            c.execute(
                "INSERT INTO invite (token_hash, rater_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash(token), rater_id, now, now + ttl_seconds),
            )
        return token

    def invite_state(self, token: str) -> str:
        """'valid', 'used' (or revoked), 'expired' or 'unknown': ask before asking for a password.

        INVITE_PROBLEMS has the message for each state but 'valid'.
        """
        row = self._row(
            "SELECT expires_at, used_at FROM invite WHERE token_hash = ?", (token_hash(str(token)),)
        )
        return _invite_state(row, self._now())

    def redeem_invite(self, token: str, password: str) -> int:
        """Set the invited rater's password and burn every open invite of theirs; return the id.

        AuthError (INVITE_PROBLEMS) for a bad link, checked before the password (StoreError).
        """
        state = self.invite_state(token)
        if state != "valid":
            raise AuthError(INVITE_PROBLEMS[state])
        hashed = hash_password(check_password(password))
        with self._write() as c:
            row = c.execute(
                "SELECT expires_at, used_at, rater_id FROM invite WHERE token_hash = ?",
                (token_hash(str(token)),),
            ).fetchone()
            now = self._now()
            state = _invite_state(row, now)  # again, under the write lock
            if state != "valid":
                raise AuthError(INVITE_PROBLEMS[state])
            rater_id = row[2]
            c.execute(
                "UPDATE invite SET used_at = ? WHERE rater_id = ? AND used_at IS NULL",
                (now, rater_id),
            )
            c.execute(
                "UPDATE rater SET password_hash = ?, failed_logins = 0, locked_until = NULL "
                "WHERE id = ?",
                (hashed, rater_id),
            )
            return rater_id

    # --- login -----------------------------------------------------------------------------
    def login(self, name: str, password: str) -> Rater:
        """The rater if `password` is right and the account active and not locked; else
        AuthError(LOGIN_FAILED), the same message and one password hash whatever went wrong."""
        dummy = _dummy_hash()
        row = self._row("SELECT id, password_hash FROM rater WHERE name = ?", (str(name),))
        stored = row[1] if row is not None and row[1] is not None else None
        ok = verify_password(str(password), stored or dummy) and stored is not None
        if stored is None:
            raise AuthError(LOGIN_FAILED)
        rater_id = row[0]
        with self._write() as c:  # check and count in one transaction
            failed, locked_until, active, current = c.execute(
                "SELECT failed_logins, locked_until, active, password_hash FROM rater WHERE id = ?",
                (rater_id,),
            ).fetchone()
            now = self._now()
            ok = ok and current == stored  # a password changed meanwhile: the old one fails
            if locked_until is not None and locked_until > now:
                ok = False  # locked: refused, and not counted
            elif not ok:
                fails = (0 if locked_until is not None else failed) + 1  # a lapsed lock: afresh
                lock = now + self.lockout_seconds if fails >= self.max_failures else None
                c.execute(
                    "UPDATE rater SET failed_logins = ?, locked_until = ? WHERE id = ?",
                    (fails, lock, rater_id),
                )
            elif active:
                c.execute(
                    "UPDATE rater SET failed_logins = 0, locked_until = NULL WHERE id = ?",
                    (rater_id,),
                )
        if not (ok and active):
            raise AuthError(LOGIN_FAILED)
        return self.rater(rater_id)

    # --- sessions --------------------------------------------------------------------------
    def open_session(self, rater: Rater, ttl_seconds: float = SESSION_SECONDS) -> str:
        """A new session token for `rater` (as `login` returned it), valid for `ttl_seconds`.

        AuthError for a deactivated or locked-out rater. Only the token's SHA-256 is stored.
        """
        if not isinstance(rater, Rater) or rater == SYSTEM:
            raise AuthError("a session is opened for the Rater returned by login")
        if ttl_seconds <= 0:
            raise StoreError(f"a session needs a positive lifetime, got {ttl_seconds} s")
        token = secrets.token_urlsafe(24)
        with self._write() as c:
            self._require_working(c, rater.id)
            now = self._now()
            c.execute(
                "INSERT INTO login_session (token_hash, rater_id, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (token_hash(token), rater.id, now, now + ttl_seconds),
            )
        return token

    def session_rater(self, token: str) -> Rater:
        """The rater whose session `token` is; AuthError (SESSION_PROBLEMS, or the rater's
        deactivation or lockout) for an unknown, expired or revoked token."""
        row = self._row(
            "SELECT s.expires_at, s.revoked_at, r.id, r.name, r.active, r.locked_until "
            "FROM login_session s JOIN rater r ON r.id = s.rater_id WHERE s.token_hash = ?",
            (token_hash(str(token)),),
        )
        if row is None:
            raise AuthError(SESSION_PROBLEMS["unknown"])
        expires_at, revoked_at, rater_id, name, active, locked_until = row
        if revoked_at is not None:
            raise AuthError(SESSION_PROBLEMS["revoked"])
        if expires_at <= self._now():
            raise AuthError(SESSION_PROBLEMS["expired"])
        self._refuse_unless_working(name, active, locked_until)
        return self.rater(rater_id)

    def close_session(self, token: str) -> None:
        """Revoke session `token` (logging out); an unknown or ended one is left as it is."""
        with self._write() as c:
            c.execute(
                "UPDATE login_session SET revoked_at = ? "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                (self._now(), token_hash(str(token))),
            )
