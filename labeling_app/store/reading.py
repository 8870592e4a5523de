"""Reading the store: judgments, progress, tasks and gold accuracy, with access control.

`viewer` is a `Rater` (from `login`). Admins see every row; a rater sees only their own
judgments and their own count in `progress`. The role is read again from the database, so a
demoted or deactivated account loses access at once. `SYSTEM` (records.py) is the file-system
admin used by the CLI and the exporters.
"""

from __future__ import annotations

import json
from typing import Any

from labeling_app.store.answers import matches_gold
from labeling_app.store.records import SYSTEM, AuthError, Judgment, Rater, StoreError, Task


class ReadingMixin:
    """The reading part of `Store` (uses its `_conn` and `_lock`)."""

    def _rows(self, sql: str, params: Any = ()) -> list[tuple]:
        with self._lock:
            if self._conn is None:
                raise StoreError("this Store is closed; open a new one")
            return self._conn.execute(sql, params).fetchall()

    def _row(self, sql: str, params: Any = ()) -> tuple | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _is_admin(self, viewer: Rater) -> bool:
        """True for admins, False for raters; AuthError for anything else."""
        if not isinstance(viewer, Rater):
            raise AuthError("a viewer must be the Rater returned by login")
        if viewer == SYSTEM:
            return True
        rows = self._rows("SELECT role, active FROM rater WHERE id = ?", (viewer.id,))
        if not rows or not rows[0][1]:
            raise AuthError(f"viewer {viewer.name!r} is unknown or deactivated")
        return rows[0][0] == "admin"

    def judgments(
        self,
        viewer: Rater,
        *,
        batch_id: int | None = None,
        rater_id: int | None = None,
        include_gold: bool = False,
        include_undone: bool = False,
    ) -> list[Judgment]:
        """Judgments in id order; a rater asking for someone else's gets AuthError."""
        admin = self._is_admin(viewer)
        if not admin:
            if rater_id is not None and rater_id != viewer.id:
                raise AuthError("raters can read only their own judgments")
            rater_id = viewer.id
        where, params = ["1 = 1"], []
        if batch_id is not None:
            where.append("t.batch_id = ?")
            params.append(batch_id)
        if rater_id is not None:
            where.append("j.rater_id = ?")
            params.append(rater_id)
        if not include_gold:
            where.append("t.is_gold = 0")
        if not include_undone:
            where.append("j.undone = 0")
        rows = self._rows(
            "SELECT j.id, j.task_id, j.rater_id, t.kind, p.text, t.image_ids, j.answer, "
            "j.created_at, j.seconds, t.batch_id, t.prompt_id, r.name, j.assignment_id, "
            "j.client_token, j.undone, t.gold FROM judgment j "
            "JOIN task t ON t.id = j.task_id JOIN prompt p ON p.id = t.prompt_id "
            f"JOIN rater r ON r.id = j.rater_id WHERE {' AND '.join(where)} ORDER BY j.id",
            params,
        )
        return [
            Judgment(
                id=r[0],
                task_id=r[1],
                rater_id=r[2],
                kind=r[3],
                prompt=r[4],
                image_ids=json.loads(r[5]),
                answer=json.loads(r[6]),
                created_at=r[7],
                seconds=r[8],
                batch_id=r[9],
                prompt_id=r[10],
                rater_name=r[11],
                assignment_id=r[12],
                client_token=r[13],
                undone=bool(r[14]),
                gold=json.loads(r[15]) if (admin and r[15]) else None,
            )
            for r in rows
        ]

    def progress(self, viewer: Rater, batch_id: int | None = None) -> dict[str, Any]:
        """Counts for a progress bar and the admin page (gold tasks counted apart).

        tasks, needed (sum of overlaps), done (judgments that count towards the overlaps),
        remaining, judgments, gold_tasks, gold_judgments, locked (tasks served right now),
        per_rater {rater id: live judgments, gold included} (a rater sees only their own).
        """
        admin = self._is_admin(viewer)
        where = "batch_id = ?" if batch_id is not None else "1 = 1"
        params = [batch_id] if batch_id is not None else []
        counts = {
            is_gold: row
            for is_gold, *row in self._rows(
                "SELECT is_gold, sum(tasks), sum(needed), sum(done), sum(judged) FROM batch_count "
                f"WHERE {where} GROUP BY is_gold",
                params,
            )
        }
        tasks, needed, done, judged = counts.get(0, (0, 0, 0, 0))
        gold_tasks, _, _, gold_judged = counts.get(1, (0, 0, 0, 0))
        locked = self._rows(
            f"SELECT count(*) FROM task WHERE locked_until > ? AND {where}", [self._now(), *params]
        )[0][0]
        mine = "" if admin else f" AND rater_id = {int(viewer.id)}"  # a rater's rows only
        per = self._rows(
            f"SELECT rater_id, count(*) FROM judgment WHERE {where} AND undone = 0{mine} "
            "GROUP BY rater_id",
            params,
        )
        per_rater = {rater_id: n for rater_id, n in per}
        if not admin:
            per_rater.setdefault(viewer.id, 0)
        return {
            "tasks": tasks,
            "needed": needed,
            "done": done,
            "remaining": needed - done,
            "judgments": judged,
            "gold_tasks": gold_tasks,
            "gold_judgments": gold_judged,
            "locked": locked,
            "per_rater": per_rater,
        }

    def remaining_tasks(
        self, viewer: Rater, rater_id: int | None = None, *, include_gold: bool = True
    ) -> dict[int, int]:
        """Open batch id -> how many of its tasks `next_task` may still serve this rater.

        The same rules as serving: a task counts if the rater was never given it and it needs
        judgments (gold: every rater answers it once), or the rater holds it open, or skipped
        it and it still needs judgments. A task another rater holds now counts (its lock may
        run out). Closed batches and batches with nothing left are left out. `include_gold`:
        count gold tasks (pass False when the server mixes in none, gold_rate 0); they count
        only while the batch has other tasks left for the rater, since `next_task` mixes gold
        into other work and never serves it on its own. The rater
        and the admin page call this one method, so their counts agree. A rater may ask only
        about themselves (`rater_id` None: the viewer).
        """
        admin = self._is_admin(viewer)
        rater_id = viewer.id if rater_id is None else rater_id
        if not admin and rater_id != viewer.id:
            raise AuthError("raters can count only their own remaining tasks")
        needs = "(t.is_gold = 1 OR t.n_done < t.overlap)"
        rows = self._rows(
            "SELECT t.batch_id, sum(t.is_gold = 0), sum(t.is_gold = 1 AND :gold) FROM task t "
            "LEFT JOIN assignment a ON a.task_id = t.id AND a.rater_id = :rater "
            "WHERE t.batch_id IN (SELECT id FROM batch WHERE done = 0) "
            f"AND ((a.id IS NULL AND {needs}) OR a.state = 'open' "
            f"OR (a.state = 'skipped' AND {needs})) "
            "GROUP BY t.batch_id ORDER BY t.batch_id",
            {"rater": rater_id, "gold": int(include_gold)},
        )
        # gold is mixed into other work, never served on its own: it counts while work is left
        return {batch_id: regular + gold for batch_id, regular, gold in rows if regular}

    def tasks(self, batch_id: int | None = None) -> list[Task]:
        """Every task (gold answers included) in id order: for admins, exporters, trainers."""
        cond, params = ("t.batch_id = ?", [batch_id]) if batch_id is not None else ("1 = 1", [])
        rows = self._rows(
            "SELECT t.id, t.kind, p.text, t.image_ids, t.gold, t.batch_id, t.prompt_id, "
            "t.overlap, t.priority, t.n_done, t.locked_until FROM task t "
            f"JOIN prompt p ON p.id = t.prompt_id WHERE {cond} ORDER BY t.id",
            params,
        )
        paths = dict(self._rows("SELECT id, path FROM image"))
        out = []
        for r in rows:
            ids = json.loads(r[3])
            out.append(
                Task(
                    assignment_id=None,
                    task_id=r[0],
                    kind=r[1],
                    prompt=r[2],
                    image_ids=ids,
                    image_paths=[self.resolve_image_path(paths[i]) for i in ids],
                    gold=json.loads(r[4]) if r[4] else None,
                    batch_id=r[5],
                    prompt_id=r[6],
                    overlap=r[7],
                    priority=r[8],
                    done=r[9],
                    lock_expires_at=r[10],
                )
            )
        return out

    def gold_accuracy(self) -> dict[int, tuple[int, int]]:
        """Rater id -> (correct, answered) on gold tasks (live judgments only)."""
        rows = self._rows(
            "SELECT j.rater_id, t.kind, j.answer, t.gold FROM judgment j "
            "JOIN task t ON t.id = j.task_id WHERE t.is_gold = 1 AND j.undone = 0"
        )
        out: dict[int, tuple[int, int]] = {}
        for rater_id, kind, answer, gold in rows:
            right, total = out.get(rater_id, (0, 0))
            ok = matches_gold(kind, json.loads(answer), json.loads(gold))
            out[rater_id] = (right + ok, total + 1)
        return out
