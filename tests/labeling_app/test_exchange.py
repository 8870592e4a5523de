"""Export / import: Pick-a-Pic parquet and JSONL rankings, round trips, and bad files."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from base_models.errors import ArtalignError
from labeling_app.exchange import export_labels, import_labels
from labeling_app.exchange.pickapic import read_pickapic
from labeling_app.store import SYSTEM, Store

PAIR_CHOICES = ("left", "right", "tie", "both_bad")


def judge_everything(store, raters, kinds=("pair", "rank")):
    """Every rater answers every task they are served (pair choices cycle; ranks vary)."""
    n = n_pairs = 0
    for rater in raters:
        while (t := store.next_task(rater.id)) is not None:
            if t.kind == "pair":
                answer = {"choice": PAIR_CHOICES[n_pairs % 4]}
                n_pairs += 1
                if n % 3 == 0:
                    answer["ratings"] = {"fidelity": 1 + n % 7, "quality": [2, 5]}
            else:
                answer = {"ranks": [[1, 2, 3], [3, 1, 2], [1, 1, 3], [2, 2, 1]][n % 4]}
            store.submit(t.assignment_id, rater.id, answer, client_token=f"{rater.id}-{n}")
            n += 1
    return n


def judgment_set(store):
    """Each judgment as (prompt, image hashes, kind, rater, answer, created_at in µs)."""
    js = store.judgments(SYSTEM)
    images = store.images([i for j in js for i in j.image_ids])
    return sorted(
        (
            j.prompt,
            tuple(images[i].sha256 for i in j.image_ids),
            j.kind,
            j.rater_name,
            json.dumps(j.answer, sort_keys=True),
        )
        for j in js
    )


def times(store):
    return sorted(j.created_at for j in store.judgments(SYSTEM))


def test_pickapic_layout(store, alice, bob, tmp_path):
    judge_everything(store, [alice, bob])
    out = tmp_path / "prefs.parquet"
    n = export_labels(store, out, "pickapic", keep_both_bad=True).rows
    table = pq.read_table(out)
    for col in (
        "caption",
        "jpg_0",
        "jpg_1",
        "label_0",
        "label_1",
        "user_id",
        "ranking_id",
        "image_0_uid",
        "image_1_uid",
        "model_0",
        "model_1",
        "seed_0",
        "seed_1",
        "created_at",
        "both_bad",
    ):
        assert col in table.column_names
    rows = table.to_pylist()
    assert len(rows) == n
    js = store.judgments(SYSTEM)
    n_pairs = sum(1 for j in js if j.kind == "pair") + sum(3 for j in js if j.kind == "rank")
    assert n == n_pairs  # a 3-way ranking is 3 implied pairs
    for r in rows:
        assert r["label_0"] + r["label_1"] == 1.0
        assert r["jpg_0"].startswith(b"\x89PNG")
        if r["both_bad"]:
            assert r["label_0"] == 0.5
    ties = [r for r in rows if r["kind"] == "pair" and r["label_0"] == 0.5 and not r["both_bad"]]
    assert ties  # tie = 0.5 / 0.5


def both_bad_ids(store) -> set[int]:
    return {j.id for j in store.judgments(SYSTEM) if j.answer.get("choice") == "both_bad"}


def test_pickapic_leaves_both_bad_out_by_default_and_says_how_many(store, alice, bob, tmp_path):
    judge_everything(store, [alice, bob])
    bad = both_bad_ids(store)
    assert bad
    kept = export_labels(store, tmp_path / "kept.parquet", "pickapic", keep_both_bad=True)
    summary = export_labels(store, tmp_path / "p.parquet", "pickapic")
    assert summary.both_bad_left_out == len(bad) and kept.both_bad_left_out == 0
    assert summary.rows == kept.rows - len(bad)  # a both-bad pair answer is one row
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert len(rows) == summary.rows
    assert not any(r["both_bad"] for r in rows)
    assert not {r["ranking_id"] for r in rows} & bad
    # a label-only loader sees 0.5/0.5 pair rows only where the rater answered "tie"
    ties = {j.id for j in store.judgments(SYSTEM) if j.answer.get("choice") == "tie"}
    assert (
        ties
        and {r["ranking_id"] for r in rows if r["kind"] == "pair" and r["label_0"] == 0.5} == ties
    )


def test_pickapic_keep_both_bad_flags_them_and_reads_back(store, alice, bob, tmp_path):
    judge_everything(store, [alice, bob])
    bad = both_bad_ids(store)
    assert bad
    out = tmp_path / "p.parquet"
    summary = export_labels(store, out, "pickapic", keep_both_bad=True)
    rows = pq.read_table(out).to_pylist()
    flagged = [r for r in rows if r["both_bad"]]
    assert {r["ranking_id"] for r in flagged} == bad and len(flagged) == len(bad)
    assert all((r["label_0"], r["label_1"]) == (0.5, 0.5) for r in flagged)
    assert all(
        r["jpg_0"].startswith(b"\x89PNG") and r["jpg_1"].startswith(b"\x89PNG") for r in rows
    )
    read, unlabelled = read_pickapic(out)
    assert (len(read), unlabelled) == (summary.rows, 0)
    by_id = {(r.ranking_id, r.keys): r for r in read}
    for r in rows:
        back = by_id[(r["ranking_id"], (r["image_0_uid"], r["image_1_uid"]))]
        assert back.images == (r["jpg_0"], r["jpg_1"])
        assert back.labels == (r["label_0"], r["label_1"]) and back.both_bad == r["both_bad"]
        assert (back.prompt, back.rater, back.kind) == (r["caption"], r["rater_name"], r["kind"])
    assert {r.ranking_id for r in read if r.choice == "both_bad"} == bad


def test_export_cli_keep_both_bad_flag(store_env, alice, bob, tmp_path, capsys):
    from base_models.cli_main import main

    judge_everything(store_env.store, [alice, bob])
    n_bad = len(both_bad_ids(store_env.store))
    assert n_bad
    db, out = str(store_env.db), tmp_path / "p.parquet"
    assert main(["label", "export", "--db", db, "--out", str(out)]) == 0
    assert f"left out {n_bad} both-bad answers" in capsys.readouterr().out
    assert not any(pq.read_table(out).column("both_bad").to_pylist())
    assert (
        main(["label", "export", "--db", db, "--out", str(out), "--keep-both-bad", "--overwrite"])
        == 0
    )
    assert "left out" not in capsys.readouterr().out
    assert sum(pq.read_table(out).column("both_bad").to_pylist()) == n_bad


def test_pickapic_round_trip(store, alice, bob, tmp_path):
    judge_everything(store, [alice, bob])
    first = tmp_path / "a.parquet"
    export_labels(store, first, "pickapic", keep_both_bad=True)
    fresh = Store(tmp_path / "fresh.db", create=True)
    summary = import_labels(fresh, first, "pickapic")
    assert summary.raters == 2 and summary.skipped == 0
    second = tmp_path / "b.parquet"
    export_labels(fresh, second, "pickapic", keep_both_bad=True)
    cols = [
        "caption",
        "image_0_uid",
        "image_1_uid",
        "label_0",
        "label_1",
        "both_bad",
        "rater_name",
        "created_at",
        "seed_0",
        "model_1",
    ]

    def rows(path):
        return sorted(tuple(str(r[c]) for c in cols) for r in pq.read_table(path).to_pylist())

    assert rows(first) == rows(second)
    assert any(r["both_bad"] for r in pq.read_table(first).to_pylist())  # kept, and back again
    # pairs that several raters judged became one task with overlap = their number
    assert max(t.overlap for t in fresh.tasks()) == 2
    fresh.close()


def test_rankings_round_trip_keeps_every_judgment(store, alice, bob, tmp_path):
    judge_everything(store, [alice, bob])
    out = tmp_path / "exports" / "r.jsonl"
    export_labels(store, out, "rankings")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {x["kind"] for x in lines} == {"pair", "rank"}
    assert all((out.parent / g).is_file() for x in lines for g in x["generations"])
    fresh = Store(tmp_path / "fresh.db", create=True)
    import_labels(fresh, out, "rankings", batch_name="again")
    assert judgment_set(fresh) == judgment_set(store)
    assert times(fresh) == pytest.approx(times(store), abs=1e-5)  # ISO 8601 keeps µs
    out2 = tmp_path / "r2.jsonl"
    export_labels(fresh, out2, "rankings")
    drop = ("judgment_id", "task_id", "user_id", "batch", "generations")
    strip = [
        {k: v for k, v in json.loads(x).items() if k not in drop}
        for x in out2.read_text().splitlines()
    ]
    assert sorted(map(json.dumps, strip)) == sorted(
        json.dumps({k: v for k, v in x.items() if k not in drop}) for x in lines
    )
    fresh.close()


def test_export_filters_batch_and_gold(store, alice, tmp_path):
    from tests.labeling_app.conftest import procedural_batch

    gold_batch = procedural_batch(store, "gold", k=2, kinds=("pair",), overlap=1, gold_pairs=2)
    while (t := store.next_task(alice.id, batch_id=gold_batch, gold_rate=1.0)) is not None:
        store.submit(t.assignment_id, alice.id, {"choice": "left"}, client_token=str(t.task_id))
    out = tmp_path / "g.jsonl"
    n_all = export_labels(store, out, "rankings").rows
    n_gold = export_labels(store, out, "rankings", include_gold=True).rows
    assert n_gold == n_all + 2
    only = export_labels(store, out, "rankings", batch="gold", include_gold=True).rows
    assert only == len(store.judgments(SYSTEM, batch_id=gold_batch, include_gold=True))
    assert all(json.loads(x)["batch"] == "gold" for x in out.read_text().splitlines())
    with pytest.raises(ArtalignError, match="no batch"):
        export_labels(store, out, "rankings", batch="nope")


def test_import_of_public_style_files(tmp_path):
    """A minimal ImageReward-style line and a Pick-a-Pic row with JPEG bytes and int labels."""
    import io

    import pyarrow as pa
    from PIL import Image

    def encoded(colour, fmt):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), colour).save(buf, format=fmt)
        return buf.getvalue()

    for i in range(3):
        (tmp_path / f"g{i}.png").write_bytes(encoded((60 * i, 0, 0), "PNG"))
    line = {"prompt": "a cat", "generations": ["g0.png", "g1.png", "g2.png"], "ranking": [2, 1, 3]}
    (tmp_path / "ir.jsonl").write_text(json.dumps(line) + "\n")
    store = Store(tmp_path / "s.db", create=True)
    s = import_labels(store, tmp_path / "ir.jsonl", "rankings")
    [j] = store.judgments(SYSTEM)
    assert (s.judgments, j.kind, j.answer, j.rater_name) == (
        1,
        "rank",
        {"ranks": [2, 1, 3]},
        "imported",
    )
    table = pa.table(
        {
            "caption": ["a dog", "a dog"],
            "jpg_0": [encoded((1, 2, 3), "JPEG")] * 2,
            "jpg_1": [encoded((200, 2, 3), "JPEG")] * 2,
            "label_0": [1, 0],
            "label_1": [0, 1],
            "user_id": [7, 8],
        }
    )
    pq.write_table(table, tmp_path / "pp.parquet")
    s = import_labels(store, tmp_path / "pp.parquet", "pickapic")
    assert (s.tasks, s.judgments, s.raters) == (1, 2, 2)
    got = {j.rater_name: j.answer["choice"] for j in store.judgments(SYSTEM, batch_id=s.batch_id)}
    assert got == {"7": "left", "8": "right"}
    img = store.images(store.tasks(s.batch_id)[0].image_ids)
    assert all(r.settings["source_format"] == "JPEG" for r in img.values())


def test_bad_import_files_are_clear_errors(tmp_path):
    import pyarrow as pa

    store = Store(tmp_path / "s.db", create=True)
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(ArtalignError, match="lacks the Pick-a-Pic columns"):
        import_labels(store, tmp_path / "bad.parquet", "pickapic")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "generations": ["nope.png", "n2.png"]}\n')
    with pytest.raises(ArtalignError, match="does not exist"):
        import_labels(store, tmp_path / "bad.jsonl", "rankings")
    (tmp_path / "notjson.jsonl").write_text("{oops\n")
    with pytest.raises(ArtalignError, match="not JSON"):
        import_labels(store, tmp_path / "notjson.jsonl", "rankings")
    with pytest.raises(ArtalignError, match="format"):
        import_labels(store, tmp_path / "bad.jsonl", "csv")
    with pytest.raises(ArtalignError, match="does not exist"):
        import_labels(store, tmp_path / "missing.parquet", "pickapic")
    assert store.batches() == []  # nothing half-imported
