"""Serving tasks to raters: next_task, submit, skip, undo_last.

Rules (docs/labeling_store.md): a task goes to a rater at most once (UNIQUE(task_id,
rater_id)); to at most `overlap` raters; and to one rater at a time: while an assignment is
open and its lock has not expired, nobody else is served that task. Locks expire lazily, in
`next_task`. A rater's own open assignment (a reload, or one reopened by undo) is served again
before anything new. Gold tasks ignore `overlap` (every rater answers each once) and are
served only when the `gold_rate` coin says so, mixed into other work (never on its own). A
deactivated or locked-out rater is refused (AuthError) by every call here, even one who
logged in before.

The task a rater is shown last (`rater.current_assignment`, set by `next_task` and `undo_last`)
is the only one `submit` accepts: an answer names the assignment it was given for, and one
that names another (a stale page, a click that arrived as the next task appeared) is refused
with nothing written. Judgments and skips form one undo stack per rater
(`assignment.finished_seq`): `undo_last` takes back the latest of either. A skipped task comes
back to its rater once nothing new is left for them (oldest skip first), while it still needs
judgments and nobody else holds it.
"""

from __future__ import annotations

import json
import random
from typing import Any

from labeling_app.store.answers import validate_answer
from labeling_app.store.records import StoreError, Task

ORDERS = ("fifo", "random", "uncertain")

_FREE = "(t.locked_until IS NULL OR t.locked_until <= :now)"
_NEW_FOR_RATER = (
    "NOT EXISTS (SELECT 1 FROM assignment a WHERE a.task_id = t.id AND a.rater_id = :rater)"
)
_BATCH_OPEN = "(SELECT done FROM batch b WHERE b.id = t.batch_id) = 0"
_OPEN_BATCH = (
    "t.batch_id IN (SELECT id FROM batch WHERE done = 0 AND (:batch IS NULL OR id = :batch))"
)
# a task this rater skipped, served again once nothing new is left (walks assignment_skipped)
_SKIPPED_SQL = (
    "SELECT a.id, a.task_id FROM assignment a INDEXED BY assignment_skipped "
    "JOIN task t ON t.id = a.task_id "
    f"WHERE a.rater_id = :rater AND a.state = 'skipped' AND {_OPEN_BATCH} AND {_FREE} "
    "AND (t.is_gold = 1 OR t.n_done < t.overlap) ORDER BY a.finished_at, a.id LIMIT 1"
)


def _candidate_sql(gold: bool, order: str, one_batch: bool, pivot: str = "") -> str:
    """The query for the first servable task, walking a partial index in serving order.

    The index is named (INDEXED BY) so the plan never falls back to sorting every task.
    """
    if gold:
        index, pool = ("task_gold_batch" if one_batch else "task_gold"), "t.is_gold = 1"
    else:
        kind = "urgent" if order == "uncertain" else "todo"
        index = f"task_{kind}_batch" if one_batch else f"task_{kind}"
        pool = "t.n_done < t.overlap AND t.is_gold = 0"
    if gold and order == "uncertain":
        index = "task_gold_batch" if one_batch else "task_gold"  # few gold tasks: sorting is cheap
    batch = "t.batch_id = :batch" if one_batch else "1 = 1"
    by = "t.priority DESC, t.id" if order == "uncertain" else "t.id"
    return (
        f"SELECT t.id FROM task t INDEXED BY {index} WHERE {pool} AND {batch} AND {_FREE} "
        f"AND {_BATCH_OPEN} AND {_NEW_FOR_RATER}{pivot} ORDER BY {by} LIMIT 1"
    )


class ServingMixin:
    """The serving part of `Store` (uses its `_write`, `_now`, `_rng`, `_require_working`)."""

    def _pick_rng(self, seed: int | None) -> random.Random:
        if seed is not None and seed != self._rng_seed:
            self._rng, self._rng_seed = random.Random(seed), seed
        return self._rng

    def _candidate(self, c, params: dict[str, Any], gold: bool, order: str, rng) -> int | None:
        one_batch = params["batch"] is not None
        if order != "random":
            row = c.execute(_candidate_sql(gold, order, one_batch), params).fetchone()
            return row[0] if row else None
        # a random starting id, then the next candidate (wrapping round): O(log n), unlike
        # ORDER BY random() over every open task
        lo, hi = c.execute("SELECT min(id), max(id) FROM task").fetchone()
        if lo is None:
            return None
        pivot = rng.randint(lo, hi)
        for cond in (" AND t.id >= :pivot", " AND t.id < :pivot"):
            sql = _candidate_sql(gold, order, one_batch, cond)
            row = c.execute(sql, {**params, "pivot": pivot}).fetchone()
            if row:
                return row[0]
        return None

    def next_task(
        self,
        rater_id: int,
        *,
        batch_id: int | None = None,
        lock_seconds: float = 300,
        gold_rate: float = 0.0,
        order: str = "fifo",
        seed: int | None = None,
    ) -> Task | None:
        """The next task for this rater, locked to them for `lock_seconds`; None when done."""
        if order not in ORDERS:
            raise StoreError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
        if not 0.0 <= gold_rate <= 1.0:
            raise StoreError(f"gold_rate must be in [0, 1], got {gold_rate}")
        if lock_seconds <= 0:
            raise StoreError(f"lock_seconds must be positive, got {lock_seconds}")
        rng = self._pick_rng(seed)
        with self._write() as c:
            self._require_working(c, rater_id)
            now = self._now()
            params = {"now": now, "rater": rater_id, "batch": batch_id}
            until = now + lock_seconds
            own = c.execute(
                "SELECT a.id, a.task_id FROM assignment a JOIN task t ON t.id = a.task_id "
                f"WHERE a.rater_id = :rater AND a.state = 'open' AND {_OPEN_BATCH} AND "
                "(t.locked_by = :rater OR t.locked_until IS NULL OR t.locked_until <= :now) "
                "ORDER BY a.id = (SELECT current_assignment FROM rater WHERE id = :rater) DESC, "
                "a.served_at DESC, a.id DESC LIMIT 1",
                params,
            ).fetchone()
            if own is not None:
                assignment_id, task_id = own
                c.execute(
                    "UPDATE assignment SET lock_expires_at = ? WHERE id = ?", (until, assignment_id)
                )
            else:
                # release expired locks of others (lazily, here)
                c.execute(
                    "UPDATE assignment SET state = 'expired' "
                    "WHERE state = 'open' AND lock_expires_at <= ? AND rater_id != ?",
                    (now, rater_id),
                )
                # gold is mixed into other work, never served on its own (a rater with only
                # gold left is done, and `remaining_tasks` counts it so)
                task_id = self._candidate(c, params, False, order, rng)
                if task_id is not None and gold_rate > 0 and rng.random() < gold_rate:
                    task_id = self._candidate(c, params, True, order, rng) or task_id
                if task_id is not None:
                    assignment_id = c.execute(
                        "INSERT INTO assignment (task_id, rater_id, served_at, lock_expires_at, "
                        "state) VALUES (?, ?, ?, ?, 'open')",
                        (task_id, rater_id, now, until),
                    ).lastrowid
                else:  # nothing new: the oldest task this rater skipped comes back
                    skipped = c.execute(_SKIPPED_SQL, params).fetchone()
                    if skipped is None:
                        return None
                    assignment_id, task_id = skipped
                    self._reopen(c, assignment_id, now, until)
            c.execute(
                "UPDATE task SET locked_by = ?, locked_until = ? WHERE id = ?",
                (rater_id, until, task_id),
            )
            c.execute(
                "UPDATE rater SET current_assignment = ? WHERE id = ?", (assignment_id, rater_id)
            )
            return self._served_task(c, assignment_id, task_id, until)

    def _served_task(self, c, assignment_id: int, task_id: int, until: float) -> Task:
        t = c.execute(
            "SELECT t.kind, p.text, t.image_ids, t.batch_id, t.prompt_id, t.overlap, t.n_done "
            "FROM task t JOIN prompt p ON p.id = t.prompt_id WHERE t.id = ?",
            (task_id,),
        ).fetchone()
        image_ids = json.loads(t[2])
        return Task(
            assignment_id=assignment_id,
            task_id=task_id,
            kind=t[0],
            prompt=t[1],
            image_ids=image_ids,
            image_paths=self._paths_of(c, image_ids),
            gold=None,
            batch_id=t[3],
            prompt_id=t[4],
            overlap=t[5],
            done=t[6],
            lock_expires_at=until,
        )

    def _reopen(self, c, assignment_id: int, now: float, until: float) -> None:
        """Open the assignment again for its rater (undo, a skip served again): off the stack."""
        c.execute(
            "UPDATE assignment SET state = 'open', served_at = ?, lock_expires_at = ?, "
            "finished_at = NULL, finished_seq = NULL WHERE id = ?",
            (now, until, assignment_id),
        )

    def _finish(self, c, assignment_id: int, rater_id: int, state: str, now: float) -> None:
        """Close the assignment as done or skipped, on top of the rater's undo stack."""
        c.execute(
            "UPDATE assignment SET state = ?, finished_at = ?, finished_seq = "
            "(SELECT coalesce(max(finished_seq), 0) + 1 FROM assignment "
            "WHERE rater_id = ? AND finished_seq IS NOT NULL) WHERE id = ?",
            (state, now, rater_id, assignment_id),
        )

    def _paths_of(self, c, image_ids: list[int]):
        marks = ",".join("?" * len(image_ids))
        rows = dict(c.execute(f"SELECT id, path FROM image WHERE id IN ({marks})", image_ids))
        return [self.resolve_image_path(rows[i]) for i in image_ids]

    def _own_assignment(self, c, assignment_id: int, rater_id: int):
        row = c.execute(
            "SELECT a.task_id, a.state, a.served_at, t.kind, t.image_ids, t.locked_by, "
            "t.locked_until FROM assignment a JOIN task t ON t.id = a.task_id "
            "WHERE a.id = ? AND a.rater_id = ?",
            (assignment_id, rater_id),
        ).fetchone()
        if row is None:
            raise StoreError(f"assignment {assignment_id} does not belong to rater {rater_id}")
        return row

    def submit(
        self,
        assignment_id: int,
        rater_id: int,
        answer: dict[str, Any],
        *,
        client_token: str,
        seconds: float | None = None,
    ) -> int:
        """Store the rater's answer; the same `client_token` again returns the same id."""
        if not isinstance(client_token, str) or not client_token:
            raise StoreError("submit needs a non-empty client_token (one per click)")
        if seconds is not None and (not isinstance(seconds, (int, float)) or seconds < 0):
            raise StoreError(f"seconds must be a non-negative number, got {seconds!r}")
        with self._write() as c:
            self._require_working(c, rater_id)
            prior = c.execute(
                "SELECT id, assignment_id, rater_id FROM judgment WHERE client_token = ?",
                (client_token,),
            ).fetchone()
            if prior is not None:
                if (prior[1], prior[2]) != (assignment_id, rater_id):
                    raise StoreError("client_token was already used for another judgment")
                return prior[0]
            task_id, state, served_at, kind, image_ids, locked_by, locked_until = (
                self._own_assignment(c, assignment_id, rater_id)
            )
            now = self._now()
            if state == "done":
                raise StoreError(f"task {task_id} is already answered; undo it to change it")
            if state == "skipped":
                raise StoreError(f"task {task_id} was skipped; it cannot be answered now")
            shown = c.execute(
                "SELECT current_assignment FROM rater WHERE id = ?", (rater_id,)
            ).fetchone()[0]
            if shown != assignment_id:
                raise StoreError(
                    f"task {task_id} is not the task you were shown last; "
                    "judge the task on screen (reload the page if in doubt)"
                )
            if locked_by not in (None, rater_id) and locked_until > now:
                raise StoreError(
                    f"your lock on task {task_id} expired and another rater has it; "
                    "take the next task"
                )
            clean = validate_answer(kind, len(json.loads(image_ids)), answer)
            took = float(seconds) if seconds is not None else max(0.0, now - served_at)
            jid = c.execute(
                "INSERT INTO judgment (assignment_id, task_id, rater_id, answer, client_token, "
                "created_at, seconds, batch_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT batch_id FROM task WHERE id = ?))",
                (
                    assignment_id,
                    task_id,
                    rater_id,
                    json.dumps(clean),
                    client_token,
                    now,
                    took,
                    task_id,
                ),
            ).lastrowid
            self._finish(c, assignment_id, rater_id, "done", now)
            c.execute(
                "UPDATE task SET n_done = n_done + 1, "
                "locked_by = CASE WHEN locked_by = :r THEN NULL ELSE locked_by END, "
                "locked_until = CASE WHEN locked_by = :r THEN NULL ELSE locked_until END "
                "WHERE id = :t",
                {"r": rater_id, "t": task_id},
            )
            return jid

    def skip(self, assignment_id: int, rater_id: int) -> None:
        """Give the task back unanswered; it comes back to this rater once nothing new is left,
        or at once with `undo_last`."""
        with self._write() as c:
            self._require_working(c, rater_id)
            task_id, state, *_ = self._own_assignment(c, assignment_id, rater_id)
            if state not in ("open", "expired"):
                raise StoreError(f"task {task_id} is {state}; only an open task can be skipped")
            self._finish(c, assignment_id, rater_id, "skipped", self._now())
            c.execute(
                "UPDATE task SET locked_by = NULL, locked_until = NULL "
                "WHERE id = ? AND locked_by = ?",
                (task_id, rater_id),
            )

    def undo_last(self, rater_id: int) -> int | None:
        """Take back the rater's latest judgment or skip and reopen its task for them.

        A judgment row stays (undone = 1); the reopened task is what `next_task` serves this
        rater next. If another rater holds the task now, it is not reopened: an undone judgment
        leaves it to the pool, an undone skip leaves it skipped (it comes back later). Returns
        the task id, or None if there is nothing to undo.
        """
        with self._write() as c:
            self._require_working(c, rater_id)
            row = c.execute(
                "SELECT id, task_id, state FROM assignment INDEXED BY assignment_undo "
                "WHERE rater_id = ? AND finished_seq IS NOT NULL "
                "ORDER BY finished_seq DESC LIMIT 1",
                (rater_id,),
            ).fetchone()
            if row is None:
                return None
            assignment_id, task_id, state = row
            now = self._now()
            until = now + self.default_lock_seconds
            if state == "done":
                c.execute(
                    "UPDATE judgment SET undone = 1 WHERE assignment_id = ? AND undone = 0",
                    (assignment_id,),
                )
                c.execute("UPDATE task SET n_done = n_done - 1 WHERE id = ?", (task_id,))
            locked_by, locked_until = c.execute(
                "SELECT locked_by, locked_until FROM task WHERE id = ?", (task_id,)
            ).fetchone()
            if locked_by not in (None, rater_id) and locked_until > now:
                # another rater is on this task now: it goes back to the pool, not to us
                c.execute(
                    "UPDATE assignment SET state = CASE WHEN state = 'done' THEN 'expired' "
                    "ELSE state END, finished_seq = NULL WHERE id = ?",
                    (assignment_id,),
                )
                return task_id
            c.execute(
                "UPDATE assignment SET state = 'expired' WHERE task_id = ? AND state = 'open' "
                "AND rater_id != ?",
                (task_id, rater_id),
            )  # a holder whose lock ran out loses it, as in next_task
            self._reopen(c, assignment_id, now, until)
            c.execute(
                "UPDATE task SET locked_by = ?, locked_until = ? WHERE id = ?",
                (rater_id, until, task_id),
            )
            c.execute(
                "UPDATE rater SET current_assignment = ? WHERE id = ?", (assignment_id, rater_id)
            )
            return task_id

    def record_judgment(
        self,
        task_id: int,
        rater_id: int,
        answer: dict[str, Any],
        *,
        client_token: str,
        created_at: float | None = None,
        seconds: float | None = None,
    ) -> int:
        """Store a judgment made elsewhere (an import, a benchmark fill): no serving, no lock.

        Same rules as `submit`: one per (task, rater), answer validated, token idempotent.
        """
        if not isinstance(client_token, str) or not client_token:
            raise StoreError("record_judgment needs a non-empty client_token")
        with self._write() as c:
            prior = c.execute(
                "SELECT id, task_id, rater_id FROM judgment WHERE client_token = ?",
                (client_token,),
            ).fetchone()
            if prior is not None:
                if (prior[1], prior[2]) != (task_id, rater_id):
                    raise StoreError("client_token was already used for another judgment")
                return prior[0]
            row = c.execute("SELECT kind, image_ids FROM task WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise StoreError(f"no task with id {task_id}")
            clean = validate_answer(row[0], len(json.loads(row[1])), answer)
            when = self._now() if created_at is None else float(created_at)
            if c.execute(
                "SELECT 1 FROM assignment WHERE task_id = ? AND rater_id = ?", (task_id, rater_id)
            ).fetchone():
                raise StoreError(f"rater {rater_id} already has task {task_id}")
            assignment_id = c.execute(
                "INSERT INTO assignment (task_id, rater_id, served_at, lock_expires_at, "
                "finished_at, state) VALUES (?, ?, ?, ?, ?, 'open')",
                (task_id, rater_id, when, when, when),
            ).lastrowid
            self._finish(c, assignment_id, rater_id, "done", when)
            jid = c.execute(
                "INSERT INTO judgment (assignment_id, task_id, rater_id, answer, client_token, "
                "created_at, seconds, batch_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT batch_id FROM task WHERE id = ?))",
                (
                    assignment_id,
                    task_id,
                    rater_id,
                    json.dumps(clean),
                    client_token,
                    when,
                    seconds,
                    task_id,
                ),
            ).lastrowid
            c.execute("UPDATE task SET n_done = n_done + 1 WHERE id = ?", (task_id,))
            return jid
