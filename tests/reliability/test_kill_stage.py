"""SIGKILL inside a loop stage, then rerun: the stage completes, the stages done before it are
not redone, and the outputs equal those of an uninterrupted run.

The micro version (in `make test`) runs the micro loop's first three stages (data, oracle_test,
oracle) and kills the oracle's training after its first checkpoint; while the killed run works,
a second loop on the same folder is refused. The slow version kills the whole micro loop once
inside every stage, in one chain of runs, and compares the end result with an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.loop.config import load_loop_config
from rlhf.loop.runner import Markers, run_stages
from rlhf.loop.stages import build_stages
from tests.reliability import loop_kill
from tests.reliability.procs import artalign_cmd, assert_one_line_error, run

# files that hold times, PIDs, or run-specific paths
VOLATILE = (".stages", ".lock", "log.jsonl", "metrics.json", "train_config.yaml", "logs")
LONGER = ("oracle.epochs=5",)  # time to kill the oracle between its first and last checkpoint


def _first(out, n):
    return build_stages(load_loop_config("micro", None, list(LONGER)), out, None, None)[:n]


def _temporaries(out):
    return [p.name for p in out.iterdir() if p.name.startswith(".") and p.name[1:] in STAGE_DIRS]


STAGE_DIRS = ("data", "oracle_test", "oracle")


def test_kill_inside_the_oracle_stage_then_rerun(tmp_path):
    out, log = tmp_path / "killed", tmp_path / "killed.log"
    proc = loop_kill.start(out, 3, log, LONGER)
    lock = out / ".lock"
    assert loop_kill.wait_for(out / ".stages" / "data.started", proc), log.read_text()[-3000:]
    assert lock.read_text().strip() == str(proc.pid)
    second = run(artalign_cmd("loop", "--preset", "micro", "--out", out), timeout=120)
    assert_one_line_error(second, f"{lock}", f"PID {proc.pid}")
    checkpoint = out / "oracle" / "checkpoint" / "state.json"
    assert loop_kill.wait_for(checkpoint, proc), log.read_text()[-3000:]
    assert loop_kill.kill_inside(proc, out, "oracle", random.uniform(0, 0.2))
    before = loop_kill.finished(out)
    assert set(before) == {"data", "oracle_test"}
    messages: list[str] = []
    result = run_stages(_first(out, 3), out, log=messages.append)
    assert result["skipped"] == ["data", "oracle_test"] and result["ran"] == ["oracle"]
    assert {k: v for k, v in loop_kill.finished(out).items() if k in before} == before
    assert any(m.startswith("resuming: artalign oracle train") for m in messages), messages
    fresh = tmp_path / "fresh"
    run_stages(_first(fresh, 3), fresh, log=lambda _m: None)
    for stage in STAGE_DIRS:  # deterministic: bit-equal (the oracle's logs hold times)
        a, b = loop_kill.hashes(out / stage, VOLATILE), loop_kill.hashes(fresh / stage, VOLATILE)
        assert a == b, stage
    assert not _temporaries(out)


@pytest.mark.slow
def test_kill_inside_every_stage_then_rerun_matches_an_uninterrupted_run(tmp_path):
    """One subprocess per stage, each killed at a random moment inside the next stage; the
    last run finishes the loop. ~2x the micro loop's time."""
    # both runs in the same folder (the reference moved aside after), as images and configs
    # record the paths they were made from
    out, ref, log = tmp_path / "loop", tmp_path / "ref", tmp_path / "loop.log"
    assert loop_kill.start(out, None, tmp_path / "ref.log").wait(timeout=900) == 0
    out.rename(ref)
    markers = Markers(ref)
    order = [s.name for s in build_stages(load_loop_config("micro"), ref, None, None)]
    seconds = {name: markers.done(name)["seconds"] for name in order}
    rng = random.Random(24)
    missed = []
    for stage in seconds:
        if Markers(out).done(stage):
            missed.append(stage)  # finished in an earlier run before its kill landed
            continue
        proc = loop_kill.start(out, None, log)
        if not loop_kill.kill_inside(proc, out, stage, rng.uniform(0, 0.8) * seconds[stage]):
            missed.append(stage)
    final = loop_kill.start(out, None, log)
    assert final.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert len(missed) <= len(seconds) // 4, missed
    a, b = loop_kill.hashes(ref, VOLATILE), loop_kill.hashes(out, VOLATILE)
    assert a.keys() == b.keys()
    differ = sorted(k for k in a if a[k] != b[k])
    print("killed in", [s for s in seconds if s not in missed], "missed", missed, "differ", differ)
    for name in differ:  # bit-equal but for these, which record times, tokens, set orders
        _same_results(ref / name, out / name)


def _same_results(a: Path, b: Path) -> None:
    if a.suffix == ".safetensors":  # peft writes its target_modules set in any order
        ta, tb = load_file(str(a)), load_file(str(b))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), a
    elif ".db" in a.name:  # judged at other times, with other client tokens
        assert _store_rows(a) == _store_rows(b)
    elif a.name == "summary.json":  # stage timings differ
        sa, sb = json.loads(a.read_text()), json.loads(b.read_text())
        assert sa["rounds"] == sb["rounds"] and sa["regression"] == sb["regression"]
    elif a.name in ("state.json", "train_log.jsonl"):  # training seconds, RNG states
        assert _without_seconds(a) == _without_seconds(b), a
    else:
        assert a.name == "report.html", a  # shows the stage timings


def _store_rows(db: Path) -> tuple[list, list]:
    with sqlite3.connect(db) as con:
        images = con.execute("SELECT sha256, seed, prompt_id FROM image ORDER BY id").fetchall()
        judged = con.execute(
            "SELECT task_id, rater_id, answer, seconds FROM judgment ORDER BY id"
        ).fetchall()
    con.close()
    return images, judged


def _a_time_or_rng(key: str) -> bool:
    """Times, and the process's Python and numpy RNG states, which the stages before a trainer
    in the same process moved (the trainer seeds its own; its results are equal)."""
    return "seconds" in key or key.endswith("_s") or key == "rng"


def _without_seconds(path: Path) -> list:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not _a_time_or_rng(k)}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    if path.suffix == ".jsonl":
        return [strip(json.loads(ln)) for ln in path.read_text().splitlines()]
    return [strip(json.loads(path.read_text()))]
