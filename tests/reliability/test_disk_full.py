"""The disk fills up (RLIMIT_FSIZE in the child: writes past the limit fail with EFBIG) while
`artalign` writes a trainer checkpoint, a data set, an export or the label store.

Each: exit 2 with one `error:` line and no traceback; the earlier output is byte-for-byte as it
was and still loads; no temporary file or folder is left beside it; the store passes
`PRAGMA integrity_check` and keeps every judgment acknowledged before the fault.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from base_models.cli_main import main
from base_models.world.dataset import DataConfig, make_dataset
from labeling_app.batch import BatchPlan, ProceduralSource, make_batch
from labeling_app.exchange import export_labels
from labeling_app.store import Store
from tests.base_models.sd_fixtures import make_tiny_sd_folder
from tests.reliability.procs import ENV, REPO, artalign_cmd, assert_one_line_error, run_disk_full

PROMPTS = ["a large red circle", "a small blue square", "a green star", "a yellow heart"]
FULL = "the disk is full"
COLOURS = ("red", "blue", "green", "yellow", "pink", "gray")
SHAPES = ("circle", "square", "star", "heart", "cross", "triangle", "ring", "moon")
LIMIT = 40_000  # bytes a file may grow to: above SQLite's 32 KiB shared-memory file


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _no_temporaries(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not left, left


def _store(db: Path, prompts: list[str] = PROMPTS, judged: int = 4, size: int = 16) -> None:
    """A store with batch round1 (pairs of 3 images a prompt, overlap 3), raters r0-r2, and
    `judged` tasks judged by r0."""
    with Store(db, create=True) as store:
        plan = BatchPlan(k=3, overlap=3, seed=0)
        batch = make_batch(store, prompts, ProceduralSource(size=size), plan, "round1")
        raters = [store.add_rater(f"r{i}") for i in range(3)]
        with store.bulk():
            for task in store.tasks(batch)[:judged]:
                store.record_judgment(
                    task.task_id, raters[0], {"choice": "left"}, client_token=f"{task.task_id}"
                )


def _integrity_ok(db: Path) -> None:
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()


def _judgments(db: Path) -> list[tuple[int, int, str]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT task_id, rater_id, answer FROM judgment ORDER BY id").fetchall()
    con.close()
    return rows


def test_checkpoint(tmp_path):
    """DDPO resumes from epoch 0's checkpoint and cannot write epoch 1's."""
    sd = make_tiny_sd_folder(tmp_path / "sd")
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "run"
    argv = ["align", "ddpo", "--model", str(sd), "--prompts", str(tmp_path / "prompts.txt")]
    argv += ["--out", str(out), "--preset", "micro", "--reward", "brightness"]
    assert main([*argv, "epochs=1"]) == 0
    before = _hashes(out / "checkpoint")
    assert min((out / "checkpoint" / n).stat().st_size for n in before) > 10_000
    resumed = [*argv, "epochs=2", "--resume"]
    proc = run_disk_full(artalign_cmd(*resumed), limit=10_000)
    assert_one_line_error(proc, FULL)
    assert _hashes(out / "checkpoint") == before
    _no_temporaries(out)
    assert main(resumed) == 0  # the kept checkpoint loads and the run finishes


def test_data_set(tmp_path):
    out = make_dataset(DataConfig(n=8, seed=0), tmp_path / "data")
    before = _hashes(out)
    cmd = artalign_cmd("data", "make", "--out", out, "--n", "64", "--seed", "1", "--overwrite")
    assert_one_line_error(run_disk_full(cmd, limit=4096), FULL)
    assert _hashes(out) == before
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("name", ["labels.parquet", "labels.jsonl"])
def test_export(tmp_path, name):
    db = tmp_path / "labels.db"
    _store(db, [f"a {c} {s}" for c in COLOURS for s in SHAPES], judged=1000, size=32)
    out = tmp_path / "export" / name
    with Store(db) as store:
        export_labels(store, out, "pickapic" if name.endswith("parquet") else "rankings")
    before = out.read_bytes()
    assert len(before) > 2 * LIMIT  # room to open the store (its 32 KiB -shm), not to export
    cmd = artalign_cmd("label", "export", "--db", db, "--out", out, "--overwrite")
    assert_one_line_error(run_disk_full(cmd, limit=LIMIT), FULL)
    assert out.read_bytes() == before
    _no_temporaries(out.parent)


ACK = """
import os, resource, signal, sys
from labeling_app.store import Store
db = sys.argv[1]
with Store(db) as store:
    raters = [r.id for r in store.raters() if r.name in ("r1", "r2")]
    tasks = store.tasks()
    limit = max(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)) + 3 * 4096
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        for r in raters:
            for t in tasks:
                token = f"{t.task_id}:{r}"
                store.record_judgment(t.task_id, r, {"choice": "right"}, client_token=token)
                print("ack", t.task_id, r, flush=True)
    except Exception as e:
        print("fault", type(e).__name__, e, flush=True)
"""


def test_store_keeps_every_acknowledged_judgment(tmp_path):
    db = tmp_path / "labels.db"
    _store(db)
    proc = subprocess.run(
        [sys.executable, "-c", ACK, str(db)], cwd=REPO, env=ENV, capture_output=True, text=True
    )
    lines = proc.stdout.splitlines()
    acked = {tuple(map(int, ln.split()[1:])) for ln in lines if ln.startswith("ack ")}
    assert lines and lines[-1].startswith("fault "), proc.stdout + proc.stderr
    assert acked, "the limit left no room for a single judgment"
    _integrity_ok(db)
    kept = {(t, r) for t, r, _ in _judgments(db)}
    assert acked <= kept and len(kept) == 4 + len(acked)
    with Store(db) as store:
        task = store.tasks()[-1]  # and the store takes the next judgment
        store.record_judgment(task.task_id, 1, {"choice": "tie"}, client_token="after")


def test_store_batch_through_the_cli(tmp_path):
    """`label batch` into a store with judgments: refused whole (one transaction)."""
    db = tmp_path / "labels.db"
    _store(db)
    before = _judgments(db)
    prompts = tmp_path / "more.txt"
    prompts.write_text("\n".join(f"a tiny {c} {s}" for c in COLOURS for s in SHAPES) + "\n")
    cmd = artalign_cmd("label", "batch", "--db", db, "--procedural", "--prompts", prompts)
    cmd += ["--k", "4", "--batch-name", "round2"]
    assert_one_line_error(run_disk_full(cmd, limit=LIMIT), FULL)
    _integrity_ok(db)
    with Store(db) as store:
        assert [b.name for b in store.batches()] == ["round1"]
    assert _judgments(db) == before
