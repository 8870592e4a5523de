"""Store basics: schema, content, serving rules, submit/undo/skip, validation, reading."""

from __future__ import annotations

import sqlite3

import pytest
from PIL import Image

from labeling_app.store import SYSTEM, AuthError, Store, StoreError
from labeling_app.store.schema import SCHEMA_VERSION
from tests.labeling_app.conftest import procedural_batch


class Clock:
    """A settable clock for lock-timeout tests."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _answer(task, choice="left"):
    return (
        {"choice": choice}
        if task.kind == "pair"
        else {"ranks": list(range(1, len(task.image_ids) + 1))}
    )


def test_new_store_is_wal_full_sync_and_versioned(store_env):
    conn = sqlite3.connect(store_env.db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert store_env.store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


def test_missing_db_without_create_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no label store"):
        Store(tmp_path / "nope.db")
    (tmp_path / "other.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a label store"):
        Store(tmp_path / "other.db")


def test_newer_schema_version_is_refused(store_env):
    conn = sqlite3.connect(store_env.db)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version"):
        Store(store_env.db)


def test_images_are_stored_once_by_hash(store):
    pid = store.add_prompt("a red circle")
    img = Image.new("RGB", (8, 8), (200, 10, 10))
    a = store.add_image(pid, img, seed=1, model="m", settings={"x": 1})
    b = store.add_image(pid, img, seed=2, model="m")
    pa, pb = store.image_path(a), store.image_path(b)
    assert pa == pb and pa.parent.parent == store.images_dir.resolve()
    rec = store.images([a])[a]
    assert rec.sha256 == pa.stem and (rec.width, rec.height) == (8, 8) and rec.settings == {"x": 1}
    with pytest.raises(StoreError, match="not a PNG"):
        store.add_image(pid, b"GIF89a....", seed=0, model="m")
    assert store.add_prompt("a red circle") == pid


def test_served_task_is_locked_never_twice_and_overlap_respected(store, alice, bob, admin):
    served = {}
    for rater in (alice, bob, admin):
        t = store.next_task(rater.id)
        served[rater.name] = t
        assert t.gold is None and len(t.image_paths) == len(t.image_ids)
    ids = [t.task_id for t in served.values()]
    assert len(set(ids)) == 3  # a locked task goes to nobody else
    t = served["alice"]
    store.submit(t.assignment_id, alice.id, _answer(t), client_token="a1")
    # alice never sees task t again; bob (overlap 2) can, admin too once bob is done
    seen_by_alice = set()
    while (n := store.next_task(alice.id)) is not None:
        assert n.task_id not in seen_by_alice and n.task_id != t.task_id
        seen_by_alice.add(n.task_id)
        store.submit(n.assignment_id, alice.id, _answer(n), client_token=f"a{n.task_id}x")
    held = {served["bob"].task_id, served["admin"].task_id}
    assert not held & seen_by_alice  # still locked by bob and admin
    assert len(seen_by_alice) + 1 + len(held) == len(store.tasks())
    for name, rater in (("bob", bob), ("admin", admin)):
        u = served[name]
        store.submit(u.assignment_id, rater.id, _answer(u), client_token=name)
    assert {store.next_task(alice.id).task_id for _ in range(1)} <= held


def test_overlap_caps_judgments_per_task(store, alice, bob, admin, batch_id):
    for rater in (alice, bob, admin):
        while (t := store.next_task(rater.id)) is not None:
            store.submit(
                t.assignment_id, rater.id, _answer(t), client_token=f"{rater.id}-{t.task_id}"
            )
    per_task = {}
    for j in store.judgments(SYSTEM):
        per_task[j.task_id] = per_task.get(j.task_id, 0) + 1
    assert set(per_task.values()) == {2}  # overlap 2, three raters
    assert store.progress(admin, batch_id)["remaining"] == 0


def test_lock_expires_and_task_goes_to_another_rater(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "l.db", create=True, clock=clock)
    a, b = store.add_rater("a"), store.add_rater("b")
    pid = store.add_prompt("p")
    ims = [
        store.add_image(pid, Image.new("RGB", (4, 4), (i, 0, 0)), seed=i, model="m")
        for i in range(2)
    ]
    bid = store.create_batch("b", {})
    tid = store.add_task(bid, "pair", pid, ims, overlap=1)
    ta = store.next_task(a, lock_seconds=60)
    assert ta.task_id == tid
    assert store.next_task(b, lock_seconds=60) is None  # locked
    clock.t += 61
    tb = store.next_task(b, lock_seconds=60)
    assert tb is not None and tb.task_id == tid  # a's lock ran out
    with pytest.raises(StoreError, match="expired"):
        store.submit(ta.assignment_id, a, {"choice": "left"}, client_token="late")
    store.submit(tb.assignment_id, b, {"choice": "right"}, client_token="b1")
    assert store.next_task(a) is None  # a was served it once: never again


def test_expired_lock_still_accepts_answer_if_nobody_took_it(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "l.db", create=True, clock=clock)
    a = store.add_rater("a")
    pid = store.add_prompt("p")
    ims = [
        store.add_image(pid, Image.new("RGB", (4, 4), (i, 0, 0)), seed=i, model="m")
        for i in range(2)
    ]
    store.add_task(store.create_batch("b", {}), "pair", pid, ims)
    t = store.next_task(a, lock_seconds=10)
    clock.t += 100
    assert store.submit(t.assignment_id, a, {"choice": "tie"}, client_token="t") > 0


def test_reload_returns_the_same_open_assignment(store, alice):
    t1 = store.next_task(alice.id)
    t2 = store.next_task(alice.id)
    assert (t1.assignment_id, t1.task_id) == (t2.assignment_id, t2.task_id)


def test_submit_is_idempotent_on_client_token(store, alice, bob):
    t = store.next_task(alice.id)
    j1 = store.submit(t.assignment_id, alice.id, _answer(t), client_token="tok")
    j2 = store.submit(t.assignment_id, alice.id, _answer(t), client_token="tok")
    assert j1 == j2 and len(store.judgments(SYSTEM)) == 1
    u = store.next_task(bob.id)
    with pytest.raises(StoreError, match="already used"):
        store.submit(u.assignment_id, bob.id, _answer(u), client_token="tok")
    with pytest.raises(StoreError, match="already answered"):
        store.submit(t.assignment_id, alice.id, _answer(t), client_token="tok-2")


def test_submit_checks_ownership_and_answers(store, alice, bob):
    t = store.next_task(alice.id)
    with pytest.raises(StoreError, match="does not belong"):
        store.submit(t.assignment_id, bob.id, _answer(t), client_token="x")
    bad = [
        {"choice": "up"},
        {"ranks": [1, 2]},
        {},
        {"choice": "left", "extra": 1},
        "left",
        {"choice": "left", "ratings": {"fidelity": 9}},
        {"choice": "left", "ratings": {"beauty": 3}},
    ]
    for answer in bad:
        with pytest.raises(StoreError):
            store.submit(t.assignment_id, alice.id, answer, client_token=f"bad{answer!r}")
    ok = {"choice": "both_bad", "ratings": {"fidelity": 2, "quality": [3, 4]}}
    jid = store.submit(t.assignment_id, alice.id, ok, client_token="good")
    assert store.judgments(alice)[0].id == jid and store.judgments(alice)[0].answer == ok


def test_rank_answers_validated(store, alice, batch_id):
    rank = next(t for t in store.tasks(batch_id) if t.kind == "rank")
    store.set_priorities({rank.task_id: 10.0})
    t = store.next_task(alice.id, order="uncertain")
    assert t.task_id == rank.task_id and t.kind == "rank"
    for ranks in ([1, 2], [0, 1, 2], [1, 2, 4], [1.0, 2, 3], [True, 2, 3]):
        with pytest.raises(StoreError):
            store.submit(t.assignment_id, alice.id, {"ranks": ranks}, client_token=str(ranks))
    store.submit(t.assignment_id, alice.id, {"ranks": [1, 2, 2]}, client_token="tied")


def test_skip_is_final_for_that_answer(store, alice):
    t = store.next_task(alice.id)
    store.skip(t.assignment_id, alice.id)
    n = store.next_task(alice.id)
    assert n.task_id != t.task_id
    with pytest.raises(StoreError, match="skipped"):
        store.submit(t.assignment_id, alice.id, _answer(t), client_token="s")


def test_undo_reopens_for_the_same_rater(store, alice, bob):
    t = store.next_task(alice.id)
    store.submit(t.assignment_id, alice.id, _answer(t, "left"), client_token="u1")
    assert store.undo_last(alice.id) == t.task_id
    assert store.judgments(alice) == []
    assert len(store.judgments(alice, include_undone=True)) == 1
    again = store.next_task(alice.id)
    assert (again.task_id, again.assignment_id) == (t.task_id, t.assignment_id)
    assert store.next_task(bob.id).task_id != t.task_id  # locked for alice again
    store.submit(again.assignment_id, alice.id, _answer(t, "right"), client_token="u2")
    [j] = store.judgments(alice)
    assert j.answer == {"choice": "right"}
    assert store.undo_last(bob.id) is None


def test_gold_is_mixed_in_at_the_rate(tmp_path):
    store = Store(tmp_path / "g.db", create=True)
    r = store.add_rater("r")
    pid = store.add_prompt("p")
    ims = [
        store.add_image(pid, Image.new("RGB", (4, 4), (i, 0, 0)), seed=i, model="m")
        for i in range(2)
    ]
    bid = store.create_batch("b", {})
    with store.bulk():
        gold = {store.add_task(bid, "pair", pid, ims, gold={"choice": "left"}) for _ in range(150)}
        for _ in range(300):
            store.add_task(bid, "pair", pid, ims)
    served = []
    for _ in range(300):
        t = store.next_task(r, gold_rate=0.25, seed=7)
        served.append(t.task_id in gold)
        assert t.gold is None  # a rater cannot tell
        store.submit(
            t.assignment_id,
            r,
            {"choice": "left" if len(served) % 2 else "right"},
            client_token=str(t.task_id),
        )
    share = sum(served) / len(served)
    assert 0.17 < share < 0.33
    right, answered = store.gold_accuracy()[r]
    assert answered == sum(served) and 0 < right < answered
    assert store.progress(SYSTEM)["gold_judgments"] == answered
    assert all(not j.gold for j in store.judgments(SYSTEM))  # gold left out by default
    assert len(store.judgments(SYSTEM, include_gold=True)) == 300


def test_no_gold_at_rate_zero_and_done_batches_not_served(store, alice, batch_id):
    store.mark_batch_done(batch_id)
    assert store.next_task(alice.id) is None
    store.mark_batch_done(batch_id, done=False)
    assert store.next_task(alice.id, batch_id=batch_id) is not None
    with pytest.raises(StoreError, match="order"):
        store.next_task(alice.id, order="best")


def test_task_validation(store, batch_id):
    pid = store.add_prompt("q")
    ims = [
        store.add_image(pid, Image.new("RGB", (4, 4), (0, i, 0)), seed=i, model="m")
        for i in range(3)
    ]
    with pytest.raises(StoreError, match="2 images"):
        store.add_task(batch_id, "pair", pid, ims)
    with pytest.raises(StoreError, match="kind"):
        store.add_task(batch_id, "triple", pid, ims)
    with pytest.raises(StoreError, match="unknown image"):
        store.add_task(batch_id, "pair", pid, [ims[0], 99999])
    with pytest.raises(StoreError, match="overlap"):
        store.add_task(batch_id, "pair", pid, ims[:2], overlap=0)
    with pytest.raises(StoreError):
        store.add_task(batch_id, "rank", pid, ims, gold={"choice": "left"})
    with pytest.raises(StoreError, match="exists"):
        store.create_batch("b1", {})


def test_raters_read_only_their_own_rows(store, alice, bob, admin):
    for rater in (alice, bob):
        t = store.next_task(rater.id)
        store.submit(t.assignment_id, rater.id, _answer(t), client_token=rater.name)
    assert {j.rater_id for j in store.judgments(alice)} == {alice.id}
    assert {j.rater_id for j in store.judgments(admin)} == {alice.id, bob.id}
    with pytest.raises(AuthError):
        store.judgments(alice, rater_id=bob.id)
    assert store.progress(alice)["per_rater"] == {alice.id: 1}
    assert store.progress(admin)["per_rater"] == {alice.id: 1, bob.id: 1}
    store.set_active(alice.id, False)
    with pytest.raises(AuthError):
        store.judgments(alice)


def test_orders_and_batch_filter(store, alice, bob, batch_id):
    from tests.labeling_app.conftest import procedural_batch

    other = procedural_batch(store, "b2", k=2, kinds=("pair",), overlap=1)
    other_tasks = [t.task_id for t in store.tasks(other)]
    assert store.next_task(alice.id, batch_id=other).task_id == other_tasks[0]
    # uncertain: highest priority first, within the batch asked for
    store.set_priorities({other_tasks[2]: 5.0, other_tasks[1]: 1.0})
    assert store.next_task(bob.id, batch_id=other, order="uncertain").task_id == other_tasks[2]
    # random: reproducible with a seed, and every task is still served exactly once
    seen = []
    while (t := store.next_task(alice.id, order="random", seed=3)) is not None:
        seen.append(t.task_id)
        store.submit(t.assignment_id, alice.id, _answer(t), client_token=f"r{t.task_id}")
    assert sorted(seen) == sorted(
        {t.task_id for t in store.tasks()} - {other_tasks[2]}  # bob holds that one
    )
    assert seen != sorted(seen)


def test_record_judgment_is_a_served_judgment_without_serving(store, alice, bob, batch_id):
    task = store.tasks(batch_id)[0]
    jid = store.record_judgment(
        task.task_id, alice.id, {"choice": "tie"}, client_token="imp", created_at=123.0, seconds=2.5
    )
    assert (
        store.record_judgment(task.task_id, alice.id, {"choice": "tie"}, client_token="imp") == jid
    )
    [j] = store.judgments(alice)
    assert (j.id, j.created_at, j.seconds, j.answer) == (jid, 123.0, 2.5, {"choice": "tie"})
    with pytest.raises(StoreError, match="already has"):
        store.record_judgment(task.task_id, alice.id, {"choice": "tie"}, client_token="imp2")
    with pytest.raises(StoreError):
        store.record_judgment(task.task_id, 999, {"choice": "tie"}, client_token="imp3")
    assert all(t.task_id != task.task_id for t in [store.next_task(alice.id)])
    p = store.progress(bob, batch_id)
    assert p["judgments"] == 1 and p["per_rater"] == {bob.id: 0}  # totals, but not alice's row


def test_progress_counters_match_a_full_count(store, alice, bob, admin, batch_id):
    """The trigger-kept counters equal counting the rows, after submits, undos and imports."""
    from tests.labeling_app.conftest import procedural_batch

    procedural_batch(store, "g", k=2, kinds=("pair",), overlap=1, gold_pairs=2)
    for n, rater in enumerate((alice, bob, alice, admin, bob, alice)):
        t = store.next_task(rater.id, gold_rate=0.3, seed=1)
        store.submit(t.assignment_id, rater.id, _answer(t), client_token=f"p{n}")
        if n % 3 == 2:
            store.undo_last(rater.id)
    store.record_judgment(
        store.tasks(batch_id)[-1].task_id, bob.id, {"ranks": [1, 2, 3]}, client_token="rec"
    )
    for b in (None, batch_id):
        tasks = [t for t in store.tasks(b)]
        live = store.judgments(SYSTEM, batch_id=b, include_gold=True)
        regular = [t for t in tasks if t.gold is None]
        per_task = {t.task_id: sum(j.task_id == t.task_id for j in live) for t in tasks}
        p = store.progress(admin, b)
        assert p["tasks"] == len(regular) and p["gold_tasks"] == len(tasks) - len(regular)
        assert p["needed"] == sum(t.overlap for t in regular)
        assert p["done"] == sum(min(per_task[t.task_id], t.overlap) for t in regular)
        assert p["judgments"] + p["gold_judgments"] == len(live)
        assert sum(p["per_rater"].values()) == len(live)


@pytest.mark.parametrize("order", ["fifo", "random", "uncertain"])
@pytest.mark.parametrize("one_batch", [False, True])
def test_every_serving_query_runs(store, alice, order, one_batch):
    """Each (order, gold or not, one batch or all) query names an index that fits it."""
    from tests.labeling_app.conftest import procedural_batch

    gold_batch = procedural_batch(store, "g", k=2, kinds=("pair",), overlap=1, gold_pairs=1)
    batch = gold_batch if one_batch else None
    kinds = []
    while t := store.next_task(alice.id, batch_id=batch, order=order, gold_rate=0.5, seed=2):
        kinds.append(t.task_id)
        store.submit(t.assignment_id, alice.id, _answer(t), client_token=f"q{t.task_id}")
    expected = store.tasks(batch)
    assert sorted(kinds) == sorted(t.task_id for t in expected)


# --- issue 23: submit names the task on screen; skips can be undone and come back -----------


def test_submit_refuses_an_assignment_that_is_not_the_task_on_screen(store, alice):
    """A stale page (or a click that reached the next task's request) cannot judge a task the
    rater is not being shown: the answer must name the rater's current assignment."""
    other = procedural_batch(store, "b2", prompts=["a green star"], k=2, kinds=("pair",))
    t1 = store.next_task(alice.id)  # b1, on screen in one tab ...
    t2 = store.next_task(alice.id, batch_id=other)  # ... then b2 is shown: t1 stays open
    assert t2.task_id != t1.task_id
    with pytest.raises(StoreError, match=f"task {t1.task_id} is not the task you were shown"):
        store.submit(t1.assignment_id, alice.id, _answer(t1), client_token="stale")
    assert store.judgments(alice, include_undone=True) == []
    store.submit(t2.assignment_id, alice.id, _answer(t2), client_token="shown")
    again = store.next_task(alice.id)  # t1 is shown again: now it may be judged
    assert again.assignment_id == t1.assignment_id
    store.submit(t1.assignment_id, alice.id, _answer(t1), client_token="t1")
    assert sorted(j.task_id for j in store.judgments(alice)) == sorted([t1.task_id, t2.task_id])


def test_undo_after_skip_brings_the_skipped_task_back(store, alice):
    t1 = store.next_task(alice.id)
    store.submit(t1.assignment_id, alice.id, _answer(t1), client_token="j1")
    t2 = store.next_task(alice.id)
    store.skip(t2.assignment_id, alice.id)
    t3 = store.next_task(alice.id)
    assert store.undo_last(alice.id) == t2.task_id  # the skip, not the judgment before it
    assert [j.task_id for j in store.judgments(alice)] == [t1.task_id]
    back = store.next_task(alice.id)
    assert (back.task_id, back.assignment_id) == (t2.task_id, t2.assignment_id)
    store.submit(back.assignment_id, alice.id, _answer(back), client_token="j2")
    # the stack goes on: the new judgment of t2, then (the skip is gone) the judgment of t1
    assert store.undo_last(alice.id) == t2.task_id
    assert store.next_task(alice.id).task_id == t2.task_id
    assert store.undo_last(alice.id) == t1.task_id
    assert store.next_task(alice.id).task_id == t1.task_id
    assert t3.task_id not in (t1.task_id, t2.task_id)  # t3 is still open, after them


def test_skipped_task_comes_back_after_the_other_tasks(store, alice):
    t = store.next_task(alice.id)
    store.skip(t.assignment_id, alice.id)
    seen = []
    while (n := store.next_task(alice.id)) is not None and n.task_id != t.task_id:
        seen.append(n.task_id)
        store.submit(n.assignment_id, alice.id, _answer(n), client_token=f"k{n.task_id}")
    assert n is not None and n.task_id == t.task_id  # last, not never
    assert len(seen) == len(store.tasks()) - 1
    store.submit(n.assignment_id, alice.id, _answer(n), client_token="last")
    assert store.next_task(alice.id) is None


def test_skipped_task_does_not_come_back_once_others_filled_it(store, alice, bob, admin):
    t = store.next_task(alice.id)
    store.skip(t.assignment_id, alice.id)
    for rater in (bob, admin):  # overlap 2: both judge it, then alice has no need of it
        while (n := store.next_task(rater.id)) is not None:
            store.submit(
                n.assignment_id, rater.id, _answer(n), client_token=f"{rater.name}{n.task_id}"
            )
    assert store.next_task(alice.id) is None


def test_version_1_store_is_migrated_and_keeps_its_undo_stack(store_env, alice):
    store = store_env.store
    t1 = store.next_task(alice.id)
    store.submit(t1.assignment_id, alice.id, _answer(t1), client_token="m1")
    t2 = store.next_task(alice.id)
    store.skip(t2.assignment_id, alice.id)
    t3 = store.next_task(alice.id)
    store.close()
    with sqlite3.connect(store_env.db) as c:  # what a version-1 store looks like
        for index in ("assignment_undo", "assignment_skipped"):
            c.execute(f"DROP INDEX {index}")
        c.execute("ALTER TABLE assignment DROP COLUMN finished_seq")
        c.execute("ALTER TABLE rater DROP COLUMN current_assignment")
        c.execute("DROP TABLE login_session")  # version 3
        c.execute("UPDATE schema_version SET version = 1")
    with Store(store_env.db) as old:
        with sqlite3.connect(store_env.db) as c:
            version = c.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            assert version == SCHEMA_VERSION  # 1 -> 2 -> 3
        old.submit(t3.assignment_id, alice.id, _answer(t3), client_token="m3")  # still shown
        assert old.undo_last(alice.id) == t3.task_id
        old.submit(t3.assignment_id, alice.id, _answer(t3), client_token="m3b")
        assert old.undo_last(alice.id) == t3.task_id
        assert old.next_task(alice.id).task_id == t3.task_id
        old.skip(t3.assignment_id, alice.id)  # now undo: t3's skip, then t2's skip, then t1
        assert [old.undo_last(alice.id) for _ in range(3)] == [t3.task_id, t2.task_id, t1.task_id]


def test_batch_instructions_set_read_clear_admin_only_and_limited(store, alice, admin, batch_id):
    from labeling_app.store.records import MAX_INSTRUCTIONS

    assert store.batch(batch_id).instructions == ""
    store.set_batch_instructions(batch_id, "  Better: closer to the prompt.\nTie: same.  ")
    assert store.batch(batch_id).instructions == "Better: closer to the prompt.\nTie: same."
    assert store.batch(batch_id).settings["k"] == 3  # the other settings stay
    store.set_batch_instructions(batch_id, "by the admin", actor=admin)
    assert store.batch(batch_id).instructions == "by the admin"
    with pytest.raises(AuthError, match="admin"):
        store.set_batch_instructions(batch_id, "by a rater", actor=alice)
    with pytest.raises(StoreError, match="2,000 or fewer"):
        store.set_batch_instructions(batch_id, "x" * (MAX_INSTRUCTIONS + 1), actor=admin)
    assert store.batch(batch_id).instructions == "by the admin"  # refused: nothing written
    store.set_batch_instructions(batch_id, "x" * MAX_INSTRUCTIONS, actor=admin)
    with pytest.raises(StoreError, match="no batch"):
        store.set_batch_instructions(999, "text")
    store.set_batch_instructions(batch_id, "", actor=admin)  # empty: back to the default
    assert store.batch(batch_id).instructions == ""
    assert "instructions" not in store.batch(batch_id).settings


def test_remaining_tasks_follow_the_serving_rules(store, alice, bob, admin, batch_id):
    assert store.remaining_tasks(alice) == {batch_id: 12}
    held = store.next_task(bob.id)  # a task bob holds now still counts for alice
    assert store.remaining_tasks(alice) == {batch_id: 12}
    first = store.next_task(alice.id)
    store.submit(first.assignment_id, alice.id, _answer(first), client_token="a1")
    second = store.next_task(alice.id)
    store.skip(second.assignment_id, alice.id)
    assert store.remaining_tasks(alice) == {batch_id: 11}  # a skipped task comes back
    assert store.remaining_tasks(admin, alice.id) == {batch_id: 11}  # the admin's view
    for rater in (bob, admin):  # the skipped task fills up: it will not come back
        store.record_judgment(second.task_id, rater.id, _answer(second), client_token=rater.name)
    assert store.remaining_tasks(alice) == {batch_id: 10}
    with pytest.raises(AuthError, match="own"):
        store.remaining_tasks(alice, bob.id)

    def work() -> int:  # what next_task serves alice until it has nothing left
        served = 0
        while (t := store.next_task(alice.id)) is not None:
            store.submit(t.assignment_id, alice.id, _answer(t), client_token=f"x{t.task_id}")
            served += 1
        return served

    assert work() == 9 and store.remaining_tasks(alice) == {batch_id: 1}  # bob's task waits
    store.submit(held.assignment_id, bob.id, _answer(held), client_token="b1")
    assert work() == 1 and store.remaining_tasks(alice) == {}


def test_remaining_tasks_leave_out_closed_batches_and_gold_on_request(store, alice, batch_id):
    gold = procedural_batch(store, "g", k=2, kinds=("pair",), gold_pairs=2)
    n_gold = sum(1 for t in store.tasks(batch_id=gold) if t.gold)
    n_all = len(store.tasks(batch_id=gold))
    assert n_gold >= 1
    assert store.remaining_tasks(alice) == {batch_id: 12, gold: n_all}
    assert store.remaining_tasks(alice, include_gold=False)[gold] == n_all - n_gold
    store.mark_batch_done(batch_id)
    assert store.remaining_tasks(alice) == {gold: n_all}


def test_gold_left_on_its_own_is_not_counted_as_remaining(store, alice, batch_id):
    """Gold is mixed into other work and never served on its own, so once only gold is left
    the rater's count is 0, matching `next_task`, which serves nothing (the page would
    otherwise say "remaining 2" beside "No tasks left")."""
    gold = procedural_batch(store, "g", k=2, kinds=("pair",), gold_pairs=2)
    n_gold = sum(1 for t in store.tasks(batch_id=gold) if t.gold)
    store.mark_batch_done(batch_id)
    while (t := store.next_task(alice.id, batch_id=gold, gold_rate=0.0)) is not None:
        store.submit(t.assignment_id, alice.id, _answer(t), client_token=f"g{t.task_id}")
    assert n_gold >= 1  # every gold task is left; even a sure coin serves none of it alone
    assert store.next_task(alice.id, batch_id=gold, gold_rate=1.0) is None
    assert store.remaining_tasks(alice) == {}
