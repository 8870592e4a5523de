"""The SQLite schema of the preference store, its version, and how a connection is opened.

WAL mode (readers never block the writer), synchronous=FULL (a commit is on disk before the
call returns, so an acknowledged judgment survives SIGKILL or power loss), busy_timeout 30 s
(writers queue instead of failing). Counters on `task` (n_done, locked_by, locked_until) are
kept in the same transactions as the rows they summarise, so serving never counts judgments.

Version 2 added `rater.current_assignment` (the task the rater is being shown; `submit`
accepts only it) and `assignment.finished_seq` (the rater's undo stack of judgments and
skips); version 3 added `login_session` (the SHA-256 of each session token that lets a
logged-in browser survive a reload or a server restart). An older store is migrated in place
when it is opened (`MIGRATIONS`), one version at a time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from base_models.disk_errors import disk_error_message
from labeling_app.store.records import StoreError

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 30.0

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
    "PRAGMA foreign_keys=ON",
)

# indexes of version 2, in DDL and in the migration from version 1
_V2_INDEXES = """
CREATE INDEX assignment_undo ON assignment(rater_id, finished_seq)
    WHERE finished_seq IS NOT NULL;
CREATE INDEX assignment_skipped ON assignment(rater_id, finished_at, id) WHERE state = 'skipped';
"""

# the table of version 3, in DDL and in the migration from version 2
_V3_SESSIONS = """
CREATE TABLE login_session (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,       -- sha256 of the token: a leaked DB leaks no session
    rater_id INTEGER NOT NULL REFERENCES rater(id),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL                        -- set by logging out
);
"""

DDL = (
    """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE rater (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('rater', 'admin')),
    password_hash TEXT,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    current_assignment INTEGER             -- the task shown last (next_task, undo_last)
);
CREATE TABLE invite (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,       -- sha256 of the token: a leaked DB leaks no link
    rater_id INTEGER NOT NULL REFERENCES rater(id),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE prompt (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE image (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,                    -- relative to the images folder
    prompt_id INTEGER REFERENCES prompt(id),
    seed INTEGER,
    model TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX image_sha ON image(sha256);
CREATE TABLE batch (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE task (
    id INTEGER PRIMARY KEY,
    batch_id INTEGER NOT NULL REFERENCES batch(id),
    kind TEXT NOT NULL CHECK (kind IN ('pair', 'rank')),
    prompt_id INTEGER NOT NULL REFERENCES prompt(id),
    image_ids TEXT NOT NULL,               -- JSON list in display order
    overlap INTEGER NOT NULL CHECK (overlap >= 1),
    gold TEXT,                             -- JSON answer, or NULL
    is_gold INTEGER NOT NULL DEFAULT 0,
    priority REAL NOT NULL DEFAULT 0,
    n_done INTEGER NOT NULL DEFAULT 0,     -- live judgments
    locked_by INTEGER,                     -- rater holding the task-level lock ...
    locked_until REAL                      -- ... until then (free once in the past)
);
-- serving walks these partial indexes in serving order (serving.py names them)
CREATE INDEX task_todo ON task(id) WHERE n_done < overlap AND is_gold = 0;
CREATE INDEX task_todo_batch ON task(batch_id, id) WHERE n_done < overlap AND is_gold = 0;
CREATE INDEX task_urgent ON task(priority DESC, id) WHERE n_done < overlap AND is_gold = 0;
CREATE INDEX task_urgent_batch ON task(batch_id, priority DESC, id)
    WHERE n_done < overlap AND is_gold = 0;
CREATE INDEX task_gold ON task(id) WHERE is_gold = 1;
CREATE INDEX task_gold_batch ON task(batch_id, id) WHERE is_gold = 1;
CREATE INDEX task_batch ON task(batch_id);
CREATE INDEX task_locked ON task(locked_until) WHERE locked_until IS NOT NULL;
CREATE TABLE assignment (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES task(id),
    rater_id INTEGER NOT NULL REFERENCES rater(id),
    served_at REAL NOT NULL,
    lock_expires_at REAL NOT NULL,
    finished_at REAL,
    state TEXT NOT NULL CHECK (state IN ('open', 'done', 'skipped', 'expired')),
    finished_seq INTEGER,                  -- place in the rater's undo stack (done or skipped)
    UNIQUE (task_id, rater_id)
);
CREATE INDEX assignment_open ON assignment(rater_id, lock_expires_at) WHERE state = 'open';
CREATE INDEX assignment_expiry ON assignment(lock_expires_at) WHERE state = 'open';
"""
    + _V2_INDEXES
    + """CREATE TABLE judgment (
    id INTEGER PRIMARY KEY,
    assignment_id INTEGER NOT NULL REFERENCES assignment(id),
    task_id INTEGER NOT NULL REFERENCES task(id),
    rater_id INTEGER NOT NULL REFERENCES rater(id),
    answer TEXT NOT NULL,
    client_token TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    seconds REAL,
    undone INTEGER NOT NULL DEFAULT 0,
    batch_id INTEGER NOT NULL REFERENCES batch(id)  -- the task's, copied for progress counts
);
-- one live judgment per assignment (an undone one stays for the record)
CREATE UNIQUE INDEX judgment_live ON judgment(assignment_id) WHERE undone = 0;
CREATE INDEX judgment_rater ON judgment(rater_id, id);
CREATE INDEX judgment_live_rater ON judgment(rater_id) WHERE undone = 0;
CREATE INDEX judgment_live_batch ON judgment(batch_id, rater_id) WHERE undone = 0;
CREATE INDEX judgment_task ON judgment(task_id);
-- progress counters per (batch, gold or not), kept by triggers in the writing transaction,
-- so a progress bar reads a few rows instead of aggregating every task
CREATE TABLE batch_count (
    batch_id INTEGER NOT NULL REFERENCES batch(id),
    is_gold INTEGER NOT NULL,
    tasks INTEGER NOT NULL DEFAULT 0,
    needed INTEGER NOT NULL DEFAULT 0,     -- sum of overlaps
    done INTEGER NOT NULL DEFAULT 0,       -- sum of min(n_done, overlap)
    judged INTEGER NOT NULL DEFAULT 0,     -- sum of n_done: live judgments
    PRIMARY KEY (batch_id, is_gold)
);
CREATE TRIGGER task_added AFTER INSERT ON task BEGIN
    INSERT OR IGNORE INTO batch_count (batch_id, is_gold) VALUES (NEW.batch_id, NEW.is_gold);
    UPDATE batch_count SET tasks = tasks + 1, needed = needed + NEW.overlap,
        done = done + min(NEW.n_done, NEW.overlap), judged = judged + NEW.n_done
    WHERE batch_id = NEW.batch_id AND is_gold = NEW.is_gold;
END;
CREATE TRIGGER task_counted AFTER UPDATE OF n_done, overlap ON task BEGIN
    UPDATE batch_count SET needed = needed + NEW.overlap - OLD.overlap,
        done = done + min(NEW.n_done, NEW.overlap) - min(OLD.n_done, OLD.overlap),
        judged = judged + NEW.n_done - OLD.n_done
    WHERE batch_id = NEW.batch_id AND is_gold = NEW.is_gold;
END;
"""
    + _V3_SESSIONS
)


# version -> the SQL (statements end in `;`) that brings a store of that version to the next one
MIGRATIONS = {
    1: [
        "ALTER TABLE rater ADD COLUMN current_assignment INTEGER;",
        "ALTER TABLE assignment ADD COLUMN finished_seq INTEGER;",
        _V2_INDEXES,
        # the task each rater was shown last: their latest open assignment
        "UPDATE rater SET current_assignment = (SELECT a.id FROM assignment a "
        "WHERE a.rater_id = rater.id AND a.state = 'open' "
        "ORDER BY a.served_at DESC, a.id DESC LIMIT 1);",
        # the undo stack: each rater's judgments and skips in the order they were made
        "WITH seq AS (SELECT id, row_number() OVER "
        "(PARTITION BY rater_id ORDER BY finished_at, id) AS n FROM assignment "
        "WHERE state IN ('done', 'skipped')) "
        "UPDATE assignment SET finished_seq = (SELECT n FROM seq WHERE seq.id = assignment.id) "
        "WHERE state IN ('done', 'skipped');",
    ],
    2: [_V3_SESSIONS],
}


def _statements(script: str) -> list[str]:
    """Split a script into statements (trigger bodies hold semicolons of their own)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement: {buf.strip()[:60]}")
    return out


def connect(db_path: Path, create: bool) -> sqlite3.Connection:
    """Open (or with `create`, make) the store at `db_path`; check its schema version."""
    exists = db_path.exists()
    if not exists and not create:
        raise StoreError(
            f"no label store at {db_path}; make one with `artalign label batch --db {db_path} ...`"
        )
    if not exists:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        if exists:  # before journal_mode=WAL rewrites the header of a file that is not a store
            _refuse_foreign(conn, db_path)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        _check_or_create(conn, db_path, create)
    except sqlite3.DatabaseError as e:
        conn.close()
        if disk_error_message(e):  # a full disk, not a foreign file: the CLI says so
            raise
        raise StoreError(f"{db_path} is not a label store ({e}); pass another --db") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _refuse_foreign(conn: sqlite3.Connection, db_path: Path) -> None:
    """Raise for an SQLite file with tables but no schema_version table (read-only check)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "schema_version" not in tables:
        raise StoreError(
            f"{db_path} is not a label store (no schema_version table); pass another --db"
        )


def _check_or_create(conn: sqlite3.Connection, db_path: Path, create: bool) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" not in tables:
        if tables or not create:
            raise StoreError(
                f"{db_path} is not a label store (no schema_version table); pass another --db"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have created it while we waited for the lock
            again = conn.execute("SELECT 1 FROM sqlite_master WHERE name='schema_version'")
            if again.fetchone() is None:
                for statement in _statements(DDL):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if row is not None and row[0] in MIGRATIONS:
        _migrate(conn)
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if row is None or row[0] != SCHEMA_VERSION:
        raise StoreError(
            f"{db_path} has label-store schema version {row and row[0]}; this artalign reads "
            f"version {SCHEMA_VERSION} (upgrade artalign or use another --db)"
        )


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older store up to SCHEMA_VERSION, one version per transaction."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # read under the write lock: another process may have migrated it meanwhile
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version not in MIGRATIONS:
                conn.execute("COMMIT")
                return
            for statement in _statements("\n".join(MIGRATIONS[version])):
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
