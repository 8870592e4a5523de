"""The Streamlit app through `AppTest`: login, pair and rank answers, skip, undo, admin page.

Every answer is read back from the store, so these tests check what lands in SQLite, not only
what the page shows. The store comes from the `store_env` fixture (conftest.py): batch b1 has,
per prompt, 3 pair tasks then one 3-way rank task, served first in, first out.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from streamlit.testing.v1 import AppTest

from labeling_app.app import MAIN_SCRIPT, labeling, session
from labeling_app.app.settings import AppSettings
from labeling_app.store import AuthError, Store
from tests.labeling_app.conftest import PASSWORDS, procedural_batch


@pytest.fixture
def make_app(store_env, monkeypatch):
    """AppTest of the real script on the fixture's store; keyword args override settings.

    AppTest clicks arrive within microseconds of the page, so the input grace window is off
    (`grace=0`) unless a test asks for the default (`grace=None`).
    """

    def make(grace: float | None = 0.0, **overrides) -> AppTest:
        if grace is not None:
            monkeypatch.setattr(session, "INPUT_GRACE_SECONDS", grace)
        settings = AppSettings(**{"db": str(store_env.db), "gold_rate": 0.0, **overrides})
        for key, value in settings.to_env().items():
            monkeypatch.setenv(key, value)
        return AppTest.from_file(str(MAIN_SCRIPT), default_timeout=30)

    return make


def log_in(at: AppTest, name: str, password: str | None = None) -> AppTest:
    at.run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PASSWORDS[name] if password is None else password)
    return at.button[0].click().run()


def click(at: AppTest, label: str) -> AppTest:
    """Click the button whose text starts with `label` (buttons carry a hotkey hint)."""
    matches = [b for b in at.button if b.label.startswith(label)]
    assert len(matches) == 1, [b.label for b in at.button]
    return matches[0].click().run()


def shown_task(at: AppTest) -> int | None:
    """The id of the task on screen (kept in session state: the page does not show it)."""
    served = at.session_state.get(session.SERVED)
    return None if served is None else served.task.task_id


def answers(store_env, rater) -> list[tuple[int, dict]]:
    js = store_env.store.judgments(store_env.admin, rater_id=rater.id, include_gold=True)
    return [(j.task_id, j.answer) for j in sorted(js, key=lambda j: j.id)]


def test_login_wrong_then_right_password(make_app):
    at = log_in(make_app(), "alice", "not-the-password")
    assert any("Login failed" in e.value for e in at.error)
    assert shown_task(at) is None
    at = log_in(make_app(), "alice")
    assert not at.error
    assert shown_task(at) == 1
    assert any("## a large red circle" in m.value for m in at.markdown)  # the prompt


def test_lockout_message_after_repeated_failures(make_app):
    at = make_app()
    for _ in range(5):
        log_in(at, "bob", "wrong")
    at = log_in(at, "bob")  # right password, but locked now
    assert any("locked" in e.value for e in at.error)
    assert shown_task(at) is None


def test_pair_click_lands_in_store_and_next_task_is_served(make_app, store_env):
    at = log_in(make_app(), "alice")
    click(at, "Left")
    assert shown_task(at) == 2
    click(at, "Both bad")
    assert shown_task(at) == 3
    assert answers(store_env, store_env.alice) == [
        (1, {"choice": "left"}),
        (2, {"choice": "both_bad"}),
    ]
    assert answers(store_env, store_env.bob) == []


def test_stale_second_click_is_dropped_and_stored_once(make_app, store_env):
    at = log_in(make_app(), "alice")
    served = at.session_state["artalign_served"]  # task 1 with the token of its buttons
    click(at, "Left")
    assert shown_task(at) == 2
    # a double click re-sends the first click's action, or another button of the same task
    stale = {"assignment_id": served.task.assignment_id, "token": served.token}
    at.session_state["artalign_pending"] = [
        ("submit", {**stale, "answer": {"choice": "right"}, "seconds": 1.0}),
        ("skip", stale),
        ("undo", {"token": served.token}),
    ]
    at.run()
    assert shown_task(at) == 2  # the task on screen is untouched
    assert not at.warning and not at.info and not at.toast
    assert answers(store_env, store_env.alice) == [(1, {"choice": "left"})]


def test_clicks_just_after_a_task_appears_are_ignored(make_app, store_env):
    """A double click's second click reaches the next task as it appears: it is dropped."""
    at = log_in(make_app(grace=None), "alice")
    click(at, "Left")  # at once: the task has been on screen for less than the grace window
    assert shown_task(at) == 1
    assert answers(store_env, store_env.alice) == []
    time.sleep(session.INPUT_GRACE_SECONDS)
    click(at, "Left")
    assert shown_task(at) == 2
    click(at, "Right")  # the second click of a double click lands on task 2 at once
    click(at, "Skip")
    click(at, "Undo last")
    assert shown_task(at) == 2
    assert answers(store_env, store_env.alice) == [(1, {"choice": "left"})]
    with sqlite3.connect(store_env.db) as c:
        states = c.execute(
            "SELECT task_id, state FROM assignment WHERE rater_id = ?", (store_env.alice.id,)
        ).fetchall()
    assert sorted(states) == [(1, "done"), (2, "open")]


def test_batch_choice_serves_from_that_batch(make_app, store_env):
    other = procedural_batch(
        store_env.store, "b2", prompts=["a green star, dotted style"], k=2, kinds=("pair",)
    )
    at = log_in(make_app(), "alice")
    assert shown_task(at) == 1
    at.sidebar.selectbox(key="batch_choice").set_value(f"{other}: b2").run()
    (task,) = store_env.store.tasks(batch_id=other)
    assert shown_task(at) == task.task_id
    click(at, "Tie")
    assert answers(store_env, store_env.alice) == [(task.task_id, {"choice": "tie"})]
    # b2 has nothing left for alice: it leaves the picker and labeling goes on from all batches
    assert at.sidebar.selectbox(key="batch_choice").options == [
        labeling.ANY_BATCH,
        f"{store_env.batch_id}: b1",
    ]
    assert any("b2 has no tasks left for you" in t.value for t in at.toast)
    assert shown_task(at) == 1  # her open task of b1


def test_skip_stores_nothing_and_is_not_served_again(make_app, store_env):
    at = log_in(make_app(), "alice")
    click(at, "Skip")
    assert shown_task(at) == 2
    assert answers(store_env, store_env.alice) == []
    with sqlite3.connect(store_env.db) as c:
        states = c.execute(
            "SELECT task_id, state FROM assignment WHERE rater_id = ?", (store_env.alice.id,)
        ).fetchall()
    assert sorted(states) == [(1, "skipped"), (2, "open")]


def test_undo_reopens_last_task_for_the_same_rater(make_app, store_env):
    at = log_in(make_app(), "alice")
    click(at, "Left")  # task 1
    click(at, "Right")  # task 2
    assert shown_task(at) == 3
    click(at, "Undo last")
    assert shown_task(at) == 2  # judge it again
    assert answers(store_env, store_env.alice) == [(1, {"choice": "left"})]
    click(at, "Tie")
    assert shown_task(at) == 3  # the task that was on screen before the undo comes back
    assert answers(store_env, store_env.alice) == [(1, {"choice": "left"}), (2, {"choice": "tie"})]


def test_ranking_submit_needs_every_rank_and_stores_competition_ranks(make_app, store_env):
    at = log_in(make_app(), "alice")
    for _ in range(3):
        click(at, "Left")
    assert shown_task(at) == 4
    rank_boxes = [r for r in at.radio if r.label.startswith("Rank of image")]
    assert len(rank_boxes) == 3
    rank_boxes[0].set_value(3)
    rank_boxes[1].set_value(1)
    click(at, "Submit ranking")  # image 3 has no rank yet
    assert shown_task(at) == 4
    assert any("every image" in t.value for t in at.toast)
    [r for r in at.radio if r.label == "Rank of image 3 (1 = best)"][0].set_value(3)
    click(at, "Submit ranking")
    assert shown_task(at) == 5
    # chosen 3, 1, 3: image 2 best, images 1 and 3 tied behind it -> ranks 2, 1, 2
    assert answers(store_env, store_env.alice)[-1] == (4, {"ranks": [2, 1, 2]})


def test_ratings_sliders_add_per_image_ratings(make_app, store_env):
    at = log_in(make_app(ratings=True), "alice")
    sliders = [s for s in at.slider if s.label in ("Prompt fidelity", "Quality")]
    assert len(sliders) == 4  # two per image
    sliders[0].set_value(6)
    sliders[3].set_value(2)
    click(at, "Right")
    assert answers(store_env, store_env.alice) == [
        (1, {"choice": "right", "ratings": {"fidelity": [6, 4], "quality": [4, 2]}})
    ]


def test_rater_cannot_open_the_admin_page(make_app):
    at = log_in(make_app(), "alice")
    assert not [r for r in at.sidebar.radio if r.label == "Page"]
    at.session_state["page"] = "Admin"  # even a forged page choice shows the labeling page
    at.run()
    assert not [t for t in at.title if t.value == "Admin"]
    assert shown_task(at) == 1
    assert not at.dataframe


def open_assignments(store_env) -> list[tuple[int, int]]:
    with sqlite3.connect(store_env.db) as c:
        return c.execute("SELECT rater_id, task_id FROM assignment WHERE state = 'open'").fetchall()


def test_admin_lands_on_the_admin_page_and_locks_no_task(make_app, store_env):
    at = log_in(make_app(), "admin")
    assert [t.value for t in at.title] == ["Admin"]
    assert shown_task(at) is None
    assert open_assignments(store_env) == []  # nothing served, so nothing locked
    at.sidebar.radio(key="page").set_value("Label").run()
    assert shown_task(at) == 1  # served (and locked) only once the Label page shows it
    assert open_assignments(store_env) == [(store_env.admin.id, 1)]


def test_admin_sees_progress_raters_and_agreement(make_app, store_env):
    rater = log_in(make_app(), "alice")
    click(rater, "Left")
    click(rater, "Right")
    at = log_in(make_app(), "admin")
    at.sidebar.radio(key="page").set_value("Admin").run()
    assert [t.value for t in at.title] == ["Admin"]
    progress = at.dataframe[0].value
    row = progress[progress["batch"] == "b1"].iloc[0]
    assert (row["tasks"], row["judgments needed"], row["judgments done"]) == (12, 24, 2)
    raters = at.dataframe[1].value.set_index("name")
    assert raters.loc["alice", "judgments"] == 2
    assert raters.loc["bob", "judgments"] == 0
    assert any("Krippendorff" in m.label for m in at.metric)


def test_admin_marks_batch_done_and_raters_get_no_more_tasks(make_app, store_env):
    at = log_in(make_app(), "admin")
    at.sidebar.radio(key="page").set_value("Admin").run()
    at.toggle[0].set_value(True).run()
    assert store_env.store.batch(store_env.batch_id).done
    rater = log_in(make_app(), "alice")
    assert shown_task(rater) is None
    assert any("No tasks left" in s.value for s in rater.success)


def test_invite_link_sets_password_and_logs_in(make_app, store_env):
    token = store_env.store.make_invite("carol")
    at = make_app()
    at.query_params["invite"] = token
    at.run()
    at.text_input(key="invite_password").input("carol-pass-1")
    at.text_input(key="invite_again").input("carol-pass-1")
    at.button[0].click().run()
    assert shown_task(at) == 1
    assert "Logged in as **carol**" in at.sidebar.markdown[0].value
    assert store_env.store.login("carol", "carol-pass-1").name == "carol"
    # the link is single-use
    again = make_app()
    again.query_params["invite"] = token
    again.run()  # said before any password is asked for
    assert any("cannot be used" in e.value and "already used" in e.value for e in again.error)
    assert not [t for t in again.text_input if t.key == "invite_password"]


def test_invite_form_uses_the_store_password_rule(make_app, store_env):
    token = store_env.store.make_invite("carol")
    at = make_app()
    at.query_params["invite"] = token
    at.run()
    at.text_input(key="invite_password").input("short")
    at.text_input(key="invite_again").input("short")
    at.button[0].click().run()
    assert any("at least 8 characters" in e.value for e in at.error)
    assert store_env.store.invite_state(token) == "valid"


def test_rater_locked_out_mid_session_is_logged_out(make_app, store_env):
    at = log_in(make_app(), "alice")
    assert shown_task(at) == 1
    for _ in range(5):
        with pytest.raises(AuthError):
            store_env.store.login("alice", "wrong")
    click(at, "Left")  # refused by the store: not saved, and the rater is logged out
    assert any("logged out" in e.value and "locked out" in e.value for e in at.error)
    assert any("log in again in 15 min" in e.value for e in at.error)
    assert shown_task(at) is None
    assert at.text_input(key="login_name") is not None  # the login page, saying why
    assert answers(store_env, store_env.alice) == []


def test_demoted_admin_cannot_act_from_a_stale_session(make_app, store_env):
    for _ in range(5):
        with pytest.raises(AuthError):
            store_env.store.login("bob", "wrong")
    at = log_in(make_app(), "admin")
    at.sidebar.radio(key="page").set_value("Admin").run()
    with sqlite3.connect(store_env.db) as conn:
        conn.execute("UPDATE rater SET role = 'rater' WHERE name = 'admin'")
    click(at, "Unlock bob")
    assert store_env.store.rater_by_name("bob").locked_until is not None  # still locked
    assert any("only an admin" in e.value for e in at.error)


def test_logout_returns_to_login_and_revokes_the_session(make_app, store_env):
    at = log_in(make_app(), "alice")
    token = at.query_params[session.SESSION_PARAM]
    at.sidebar.button(key="logout").click().run()
    assert shown_task(at) is None
    assert at.text_input(key="login_name") is not None
    assert session.SESSION_PARAM not in at.query_params
    assert not at.error  # asked for: no "session ended" message
    with pytest.raises(AuthError, match="logging out"):
        store_env.store.session_rater(token)


def test_reload_keeps_the_rater_logged_in_on_the_same_task(make_app):
    at = log_in(make_app(), "alice")
    assert shown_task(at) == 1
    reloaded = make_app()  # a reload: a new browser session, the same URL
    reloaded.query_params.update(at.query_params)
    reloaded.run()
    assert not reloaded.error
    assert shown_task(reloaded) == 1
    assert any("still logged in" in t.value for t in reloaded.toast)  # says why input was lost
    assert not [t for t in reloaded.text_input if t.key == "login_password"]


def test_session_token_logs_in_without_a_password(make_app, store_env):
    at = make_app()
    at.query_params[session.SESSION_PARAM] = store_env.store.open_session(store_env.alice)
    at.run()
    assert shown_task(at) == 1
    click(at, "Left")
    assert answers(store_env, store_env.alice) == [(1, {"choice": "left"})]


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("expired", "your session expired; log in again"),
        ("revoked", "ended by logging out"),
        ("unknown", "not known to the label store"),
    ],
)
def test_ended_session_says_why_on_the_login_page(make_app, store_env, how, message):
    yesterday = Store(store_env.db, clock=lambda: time.time() - 86400)  # 12 h sessions
    with yesterday:
        token = yesterday.open_session(store_env.alice)
    if how != "expired":
        token = store_env.store.open_session(store_env.alice)
    if how == "revoked":
        store_env.store.close_session(token)
    at = make_app()
    at.query_params[session.SESSION_PARAM] = token if how != "unknown" else "mistyped"
    at.run()
    assert shown_task(at) is None
    shown = [e.value.replace("\\", "") for e in at.error]  # markdown escapes out
    assert any(message in text for text in shown), shown
    assert session.SESSION_PARAM not in at.query_params
    at = log_in(at, "alice")  # logging in again clears the message
    assert not at.error
    assert shown_task(at) == 1


def test_admin_unlocks_a_locked_out_rater(make_app, store_env):
    for _ in range(5):
        with pytest.raises(AuthError):
            store_env.store.login("bob", "wrong")
    at = log_in(make_app(), "admin")
    at.sidebar.radio(key="page").set_value("Admin").run()
    raters = at.dataframe[1].value.set_index("name")
    # lockout time in minutes, rounded up (the default lockout is 15 minutes)
    assert raters.loc["bob", "locked out for"] == "15 min"
    assert raters.loc["alice", "locked out for"] == ""
    click(at, "Unlock bob")
    assert store_env.store.login("bob", PASSWORDS["bob"]).name == "bob"
    assert not [b for b in at.button if b.label.startswith("Unlock")]


def test_markdown_in_names_and_prompts_shows_as_text(make_app, store_env):
    """A rater name and a prompt full of markdown reach the page as their literal text."""
    from tests.labeling_app.test_app_text import rendered

    name = "__eve__._i_"  # login names allow `_` and `.`, enough for bold and italics
    prompt = "a **red** circle, [click](http://e.com) `code` :red[x] \\ _i_ <b>h</b>"
    store_env.store.add_rater(name, "eve-pass-12")
    other = procedural_batch(store_env.store, "md", prompts=[prompt], k=2, kinds=("pair",))
    at = make_app()
    at.run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input("eve-pass-12")
    at = at.button[0].click().run()
    at.sidebar.selectbox(key="batch_choice").set_value(f"{other}: md").run()
    (task,) = store_env.store.tasks(batch_id=other)
    assert shown_task(at) == task.task_id
    (heading,) = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert rendered(heading) == (["h3"], prompt)
    (who,) = [m.value for m in at.sidebar.markdown if m.value.startswith("Logged in as")]
    assert rendered(who) == (["p", "strong"], f"Logged in as {name} (rater)")


def remaining_shown(at: AppTest) -> int:
    """N of the page's "Your remaining tasks in ...: N (...)" caption."""
    (text,) = [c.value for c in at.caption if c.value.startswith("Your remaining tasks")]
    return int(text.split(": ", 1)[1].split()[0])


def test_rater_sees_default_instructions_then_the_admins(make_app, store_env):
    at = log_in(make_app(), "alice")
    assert [t.value for t in at.text] == [labeling.DEFAULT_INSTRUCTIONS]
    admin = log_in(make_app(), "admin")
    written = "Better = closer to the **prompt** [x](http://e.com).\nTie: equal."
    admin.text_area(key=f"instructions_text_{store_env.batch_id}").input(written)
    click(admin, "Save instructions of b1")
    assert any("saved" in s.value for s in admin.success)
    assert store_env.store.batch(store_env.batch_id).instructions == written
    at.run()
    assert [t.value for t in at.text] == [written]  # as plain text, not markdown


def test_picker_hides_finished_batches_and_shows_new_ones(make_app, store_env):
    store = store_env.store
    done = procedural_batch(store, "closed", prompts=["a green star"], k=2, kinds=("pair",))
    store.mark_batch_done(done)
    full = procedural_batch(store, "full", prompts=["a blue square"], k=2, kinds=("pair",))
    (task,) = store.tasks(batch_id=full)
    for rater in (store_env.bob, store_env.admin):  # overlap 2, both filled: none for alice
        store.record_judgment(task.task_id, rater.id, {"choice": "left"}, client_token=rater.name)
    at = log_in(make_app(), "alice")
    picker = at.sidebar.selectbox(key="batch_choice")
    assert picker.options == [labeling.ANY_BATCH, f"{store_env.batch_id}: b1"]
    new = procedural_batch(store, "new", prompts=["a black dot"], k=2, kinds=("pair",))
    at.run()
    assert at.sidebar.selectbox(key="batch_choice").options == [
        labeling.ANY_BATCH,
        f"{store_env.batch_id}: b1",
        f"{new}: new",
    ]


def test_remaining_count_is_the_raters_and_matches_the_admin_view(make_app, store_env):
    store, alice = store_env.store, store_env.alice
    store.add_task(  # a gold task: counted only where the server serves gold
        store_env.batch_id,
        "pair",
        store.tasks()[0].prompt_id,
        store.tasks()[0].image_ids,
        gold={"choice": "left"},
    )
    at = log_in(make_app(), "alice")
    click(at, "Left")
    expected = store.remaining_tasks(store_env.admin, alice.id, include_gold=False)
    assert remaining_shown(at) == expected[store_env.batch_id] == 11
    assert any("no gold questions" in c.value for c in at.caption)
    at.sidebar.selectbox(key="batch_choice").set_value(f"{store_env.batch_id}: b1").run()
    assert any(c.value.startswith("Your remaining tasks in this batch: 11") for c in at.caption)
    admin = log_in(make_app(), "admin")
    raters = admin.dataframe[1].value.set_index("name")
    assert raters.loc["alice", "remaining tasks"] == 11
    gold_at = log_in(make_app(gold_rate=0.5), "alice")  # the server serves gold: it counts
    assert remaining_shown(gold_at) == 12
    assert any("gold questions included" in c.value for c in gold_at.caption)
    gold_admin = log_in(make_app(gold_rate=0.5), "admin")
    assert gold_admin.dataframe[1].value.set_index("name").loc["alice", "remaining tasks"] == 12
