"""Smoke tests of `artalign label batch | export | import | status | close | users`."""

from __future__ import annotations

import io

import pytest

from base_models.cli_main import main
from labeling_app.store import SYSTEM, Store


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a large red circle\na small blue star on a black background\n")
    return path


def run(*args: str) -> int:
    return main(["label", *map(str, args)])


def test_batch_status_export_import(tmp_path, prompts, capsys):
    db = tmp_path / "l.db"
    args = ["--procedural", "--k", 3, "--kinds", "pair,rank", "--overlap", 2, "--size", 16]
    assert run("batch", "--db", db, "--prompts", prompts, *args, "--batch-name", "b1") == 0
    assert "batch 'b1'" in capsys.readouterr().out
    with Store(db) as store:
        assert len(store.tasks()) == 2 * (3 + 1)
        rater = store.add_rater("r")
        while (t := store.next_task(rater)) is not None:
            answer = {"choice": "left"} if t.kind == "pair" else {"ranks": [1, 2, 3]}
            store.submit(t.assignment_id, rater, answer, client_token=str(t.task_id))
    assert run("status", "--db", db) == 0
    out = capsys.readouterr().out
    assert "b1" in out and "50.0%" in out  # 8 of 16 needed judgments
    assert run("export", "--db", db, "--out", tmp_path / "x.parquet") == 0
    assert run("export", "--db", db, "--out", tmp_path / "x.jsonl", "--batch", "b1") == 0
    assert "wrote 8 rankings" in capsys.readouterr().out
    assert run("import", "--db", tmp_path / "n.db", "--in", tmp_path / "x.jsonl") == 0
    with Store(tmp_path / "n.db") as store:
        assert len(store.judgments(SYSTEM)) == 8
    assert run("close", "--db", db, "--batch", "b1") == 0
    with Store(db) as store:
        assert store.batch("b1").done


def test_batch_with_a_model(tmp_path, prompts, tiny_sd):
    db = tmp_path / "m.db"
    assert (
        run(
            "batch",
            "--db",
            db,
            "--prompts",
            prompts,
            "--model",
            tiny_sd,
            "--k",
            2,
            "--steps",
            2,
            "--guidance",
            1.0,
            "--batch-size",
            4,
        )
        == 0
    )
    with Store(db) as store:
        [batch] = store.batches()
        assert batch.settings["model"] == str(tiny_sd) and len(store.tasks()) == 2


def test_users_add_list_unlock(tmp_path, monkeypatch, capsys):
    db = tmp_path / "u.db"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass\n"))
    assert run("users", "add", "ann", "--db", db, "--role", "admin", "--password-stdin") == 0
    assert run("users", "add", "ben", "--db", db, "--invite", "--base-url", "http://h:9/") == 0
    out = capsys.readouterr().out
    link = next(line for line in out.splitlines() if line.startswith("http://h:9/?invite="))
    with Store(db) as store:
        assert store.login("ann", "s3cret-pass").role == "admin"
        store.redeem_invite(link.split("invite=")[1], "ben-pass")
        assert store.login("ben", "ben-pass").name == "ben"
        for _ in range(store.max_failures):
            with pytest.raises(Exception):  # noqa: B017 - AuthError, counted towards the lockout
                store.login("ben", "wrong")
    assert run("users", "list", "--db", db) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "admin" in out and "locked" in out
    assert run("users", "unlock", "ben", "--db", db) == 0
    with Store(db) as store:
        assert store.login("ben", "ben-pass").name == "ben"


def test_users_add_applies_the_store_rules(tmp_path, monkeypatch, capsys):
    db = tmp_path / "u.db"
    monkeypatch.setattr("sys.stdin", io.StringIO("12345\n"))
    assert run("users", "add", "amy", "--db", db, "--password-stdin") == 2
    assert "at least 8 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough\n"))
    assert run("users", "add", "n" * 5000, "--db", db, "--password-stdin") == 2
    assert "at most 64 characters" in capsys.readouterr().err
    assert run("users", "add", "a b", "--db", db, "--invite") == 2
    assert "letters, digits" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough\n"))
    assert run("users", "add", "amy", "--db", db, "--password-stdin") == 0
    assert run("users", "add", "amy", "--db", db, "--invite", "--role", "admin") == 2
    assert "not a password reset" in capsys.readouterr().err
    with Store(db) as store:
        assert [(r.name, r.role) for r in store.raters()] == [("amy", "rater")]


@pytest.mark.parametrize(
    "args",
    [
        ["batch", "--k", "1", "--procedural"],
        ["batch", "--kinds", "pair,triple", "--procedural"],
        ["batch", "--procedural", "--model", "x"],
        ["batch"],  # neither --model nor --procedural
        ["batch", "--model", "/no/such/folder"],
        ["batch", "--procedural", "--prompts", "EMPTY"],
    ],
)
def test_bad_batch_input_exits_2(tmp_path, prompts, args, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    if "--prompts" not in args:
        args += ["--prompts", str(prompts)]
    assert run(*args, "--db", tmp_path / "l.db") == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_other_bad_input_exits_2(tmp_path, capsys):
    db = tmp_path / "none.db"
    assert run("status", "--db", db) == 2
    assert run("export", "--db", db, "--out", tmp_path / "x.parquet") == 2
    assert run("users", "add", "x", "--db", tmp_path / "u.db") == 2  # no password source
    Store(tmp_path / "u.db", create=True).close()
    assert run("users", "unlock", "ghost", "--db", tmp_path / "u.db") == 2
    assert run("import", "--db", tmp_path / "u.db", "--in", tmp_path / "x.csv") == 2
    assert "--format" in capsys.readouterr().err
