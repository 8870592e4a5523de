"""The bad-input corpus (cases.py) through `artalign`'s own `main`, in-process.

Every case must: exit with a code other than 0; print exactly one non-empty line on stderr,
"error: ..." with the expected problem and a fix (an imperative from FIX_WORDS, e.g. "pass
--overwrite", "use another --db"); print no traceback; create nothing in the case's fresh output
paths; and leave every input it names (the existing outputs among them) byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import signal
import time
from pathlib import Path

import pytest

from base_models.cli_main import main
from tests.reliability.cases import CASES, GROUPS, KINDS, counts_by_group, counts_by_kind

FRESH = {"out": "out", "out_file": "out.png", "new_db": "new.db"}
# A fix: an imperative ("pass --overwrite", "use another --db", "remove it") or the valid values
# ("must be >= 1", "expects int", "valid keys: ...", "choose one of ...", "expected a folder with").
FIX_WORDS = re.compile(
    r"\b(pass|use|run|remove|give|pick|choose|set|write|install|reinstall|upgrade|delete|rename|"
    r"train|make|re-?export|add|drop|shorten|see|must be|expects?|expected|one of)\b|valid( \w+)?:",
    re.IGNORECASE,
)
FAST_S = 20  # a bad input fails before any real work


class TookTooLong(BaseException):
    """Raised by the alarm in a case that started real work instead of refusing."""


def run_with_alarm(argv: list[str]) -> int:
    def ring(signum, frame):
        raise TookTooLong(f"still running after {FAST_S}s: it did not refuse up front")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(FAST_S)
    try:
        return main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def tree_digest(path: Path) -> str:
    """A hash of the names and bytes of every file under `path` (or of the file itself)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def screen_lines(text: str) -> list[str]:
    """The lines of `text` as a terminal shows them: each line's text after its last carriage
    return (a cleared progress bar leaves nothing)."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


def fill(argv: str, values: dict[str, str]) -> tuple[list[str], list[str]]:
    """The argv list with placeholders filled, and the input placeholders it names."""
    names = re.findall(r"\{(\w+)\}", argv)
    unknown = set(names) - set(values)
    assert not unknown, f"unknown placeholders {unknown}"
    return [a.format(**values) for a in shlex.split(argv)], [n for n in names if n not in FRESH]


def test_corpus_covers_every_group_and_kind():
    by_kind, by_group = counts_by_kind(), counts_by_group()
    print(f"\nbad-input cases by kind: {by_kind}; by group: {by_group}")
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.group for c in CASES} <= set(GROUPS) and {c.kind for c in CASES} <= set(KINDS)
    assert min(by_group.values()) >= 2, by_group
    assert min(by_kind.values()) >= 1, by_kind


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, bad_inputs, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    values = bad_inputs | {k: str(fresh / v) for k, v in FRESH.items()}
    argv, inputs = fill(case.argv, values)
    before = {n: tree_digest(Path(values[n])) for n in inputs if Path(values[n]).exists()}
    capsys.readouterr()
    start = time.monotonic()
    code = run_with_alarm(argv)
    took = time.monotonic() - start
    out, err = capsys.readouterr()
    lines = [line for line in screen_lines(err) if line.strip()]
    assert "Traceback" not in out + err
    assert code != 0, f"exit code 0; stdout: {out[-500:]}"
    assert len(lines) == 1, f"stderr is not one line:\n{err[-2000:]}"
    message = lines[0]
    assert message.startswith("error: "), message
    assert case.expect.lower() in message.lower(), message
    assert FIX_WORDS.search(message.removeprefix("error: ")), f"names no fix: {message}"
    assert not any(fresh.iterdir()), f"wrote {sorted(p.name for p in fresh.iterdir())}"
    after = {n: tree_digest(Path(values[n])) for n in before}
    assert after == before, f"changed inputs: {[n for n in before if after[n] != before[n]]}"
    assert took < FAST_S, f"took {took:.1f}s to refuse"
