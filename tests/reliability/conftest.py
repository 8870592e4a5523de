"""Session inputs of the reliability suite (see fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.fixtures import LONG_PROMPT, build_inputs


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, micro_data, micro_clip) -> dict[str, str]:
    """{placeholder: value} of every input the cases name (paths as strings; read-only)."""
    paths = build_inputs(tmp_path_factory.mktemp("reliability"), Path(micro_data), micro_clip)
    return {name: str(path) for name, path in paths.items()} | {"long_prompt": LONG_PROMPT}
