"""Run the loop's stages in order, each at most once: done-markers, skipping, resuming.

Each stage ends by writing `OUT/.stages/<name>.done` (JSON: command, seconds, finished_at,
outputs), atomically and last, so the marker exists only if the stage finished. Before it runs,
a stage writes `<name>.started`. On every run, a stage is skipped when its marker exists, its
command is the one it would run now, and no stage it reads from finished after it; otherwise it
runs again from a clean state: its partial outputs are removed first — or, for a trainer that was
interrupted (started marker with the same command, a checkpoint in its folder), continued with
`--resume`. Commands are compared with OUT written as `$OUT`, so a moved folder still counts.

Outputs of an older `make demo` count as done for the stages `make demo` runs: a stage that has
no marker and was never started by the loop, whose `legacy` file exists (e.g. oracle/
model.safetensors) and whose inputs were adopted the same way, is adopted: it gets a marker
with `"adopted": true` and does not run.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from base_models.cli_main import main as artalign
from base_models.errors import ArtalignError
from base_models.io_utils import write_json
from rlhf.loop.config import LoopConfig
from rlhf.loop.human import wait_for_batch
from rlhf.loop.lock import loop_lock
from rlhf.loop.report_summary import write_loop_report
from rlhf.loop.stages import Stage, build_stages

Log = Callable[[str], None]
MARKER_DIR = ".stages"


class Markers:
    """The done- and started-markers of one loop folder."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.dir = out / MARKER_DIR

    def _path(self, name: str, kind: str) -> Path:
        return self.dir / f"{name}.{kind}"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def done(self, name: str) -> dict[str, Any] | None:
        return self._read(self._path(name, "done"))

    def started(self, name: str) -> dict[str, Any] | None:
        return self._read(self._path(name, "started"))

    def start(self, stage: Stage) -> None:
        write_json(
            self._path(stage.name, "started"),
            {"command": self.portable(stage.command), "pid": os.getpid(), "started_at": _now()},
        )

    def finish(self, stage: Stage, seconds: float, adopted: bool = False) -> dict[str, Any]:
        marker = {
            "stage": stage.name,
            "command": self.portable(stage.command),
            "seconds": round(seconds, 3),
            "finished_at": _now(),
            "finished_ts": time.time(),
            "outputs": [self.portable([str(p)])[0] for p in stage.outputs],
            "adopted": adopted,
        }
        write_json(self._path(stage.name, "done"), marker)
        self._path(stage.name, "started").unlink(missing_ok=True)
        return marker

    def portable(self, argv: list[str]) -> list[str]:
        """argv with this loop folder written as $OUT (markers survive a moved folder)."""
        root = re.compile(re.escape(str(self.out)) + r"(?=/|$)")
        return [root.sub("$OUT", a) for a in argv]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def why_run(stage: Stage, markers: Markers) -> str | None:
    """Why `stage` must run now, or None when its marker says it is done and up to date."""
    marker = markers.done(stage.name)
    if marker is None:
        return "interrupted earlier" if markers.started(stage.name) else "not run yet"
    if marker.get("command") != markers.portable(stage.command):
        return "its command changed"
    for dep in stage.deps:
        dep_marker = markers.done(dep)
        if dep_marker is None:
            return f"{dep} is not done"
        if dep_marker.get("finished_ts", 0) > marker.get("finished_ts", 0):
            return f"{dep} finished after it"
    return None


def adoptable(stage: Stage, markers: Markers, adopted: set[str] | None = None) -> bool:
    """An older `make demo` finished this stage (see the module docstring). `adopted`: the
    stages counted as adopted so far (default: those whose markers say so)."""
    if (
        stage.legacy is None
        or not stage.legacy.exists()
        or markers.done(stage.name)
        or markers.started(stage.name)
    ):
        return False
    if adopted is None:
        adopted = {d for d in stage.deps if (markers.done(d) or {}).get("adopted")}
    return all(d in adopted for d in stage.deps)


def plan(stages: list[Stage], markers: Markers) -> list[tuple[Stage, str]]:
    """What a run would do with each stage, without doing it: "done", "adopt" (an earlier
    `make demo` made it) or "run (why)". Nothing is written (`artalign loop --dry-run`)."""
    adopted = {s.name for s in stages if (markers.done(s.name) or {}).get("adopted")}
    running: set[str] = set()
    out = []
    for stage in stages:
        reason = why_run(stage, markers)
        first = next((d for d in stage.deps if d in running), None)
        if reason is None and first is not None:
            reason = f"{first} runs first"
        if reason is None:
            out.append((stage, "done"))
        elif adoptable(stage, markers, adopted):
            adopted.add(stage.name)
            out.append((stage, "adopt"))
        else:
            running.add(stage.name)
            out.append((stage, f"run ({reason})"))
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    # temporary siblings that atomic writers (mkdtemp beside the target) leave when killed
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*"):
            _remove(tmp)


def _should_resume(stage: Stage, markers: Markers) -> bool:
    started = markers.started(stage.name)
    return (
        stage.resume_dir is not None
        and started is not None
        and markers.done(stage.name) is None
        and started.get("command") == markers.portable(stage.command)
        and (stage.resume_dir / "checkpoint" / "state.json").is_file()
    )


def _reset_accelerate() -> None:
    """Forget Accelerate's process-wide state, so the next trainer may pick its own precision."""
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except (ImportError, AttributeError):  # pragma: no cover - older or newer accelerate
        pass


def execute(stage: Stage, markers: Markers, log: Log) -> None:
    """Run one stage from a clean state (or resume it); raise ArtalignError if it fails."""
    resume = _should_resume(stage, markers)
    if not resume:
        for path in stage.clean:
            _remove(path)
    markers.start(stage)
    if stage.before is not None:
        stage.before()
    if stage.argv:
        argv = [*stage.argv, *(["--resume"] if resume else [])]
        log(("resuming: " if resume else "") + " ".join(["artalign", *argv]))
        code = artalign(argv)
        if code != 0:
            raise ArtalignError(
                f"stage {stage.name} failed (exit {code}; its message is "
                "above); fix the cause and rerun the loop: finished stages are "
                "kept"
            )
    if stage.action is not None:
        stage.action()
    if stage.after is not None:
        stage.after()
    gc.collect()
    _reset_accelerate()


def run_stages(stages: list[Stage], out: Path, log: Log = print) -> dict[str, Any]:
    """Run what is not done; return {"ran", "skipped", "adopted": [names], "markers": {...}}."""
    names = {s.name for s in stages}
    for s in stages:
        missing = [d for d in s.deps if d not in names]
        if missing:
            raise ValueError(f"stage {s.name} depends on unknown stage(s) {missing}")
    markers = Markers(out)
    result: dict[str, Any] = {"ran": [], "skipped": [], "adopted": [], "markers": {}}
    for i, stage in enumerate(stages, 1):
        head = f"[{i}/{len(stages)} {stage.name}]"
        reason = why_run(stage, markers)
        if reason is None:
            result["skipped"].append(stage.name)
            log(f"{head} done earlier; skipped")
        elif adoptable(stage, markers):
            markers.finish(stage, 0.0, adopted=True)
            result["adopted"].append(stage.name)
            log(f"{head} {stage.legacy} exists (an earlier `make demo`); counted as done")
        else:
            log(f"{head} running ({reason})")
            t0 = time.perf_counter()
            execute(stage, markers, log)
            seconds = time.perf_counter() - t0
            markers.finish(stage, seconds)
            result["ran"].append(stage.name)
            log(f"{head} finished in {seconds:.1f}s")
        result["markers"][stage.name] = markers.done(stage.name)
    return result


def run_loop(cfg: LoopConfig, out: str | Path, log: Log = print) -> dict[str, Any]:
    """Run the whole loop of `cfg` in `out` (see the module docstring); return what ran, what
    was skipped or adopted, every stage's marker, and the summary (OUT/summary.json). Holds
    OUT/.lock while it runs (rlhf/loop/lock.py)."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ArtalignError(f"--out {out} is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    with loop_lock(out, log):  # a second loop on this folder refuses instead of racing
        return _run_locked(cfg, out, log)


def _run_locked(cfg: LoopConfig, out: Path, log: Log) -> dict[str, Any]:
    cfg.save_yaml(out / "loop_config.yaml")

    def wait(db: Path, batch: str) -> None:
        wait_for_batch(db, batch, cfg.poll_seconds, log, cfg.serve_host, cfg.serve_port)

    result: dict[str, Any] = {}

    def report() -> None:
        result["summary"] = write_loop_report(cfg, out)

    stages = build_stages(cfg, out, wait, report)
    result.update(run_stages(stages, out, log))
    if "summary" not in result:
        result["summary"] = json.loads((out / "summary.json").read_text())
    return result
