"""The whole loop in one command (`artalign loop`): stages, done-markers, rounds, the report.

- `config.py` — `LoopConfig` (presets micro / quick / sd15) and `load_loop_config`;
- `stages.py` — the stages in order: their `artalign` commands, inputs and outputs;
- `runner.py` — `run_loop(cfg, out)`: done-markers, skipping, resuming, adopting `make demo`;
- `lock.py` — OUT/.lock: one loop per folder (an flock, which dies with its process);
- `human.py` — `--human`: print how to serve the app and wait until the batch is closed;
- `report_summary.py` — OUT/report.html (the last round's evaluation + a rounds table) and
  OUT/summary.json.
"""

from rlhf.loop.config import LoopConfig, load_loop_config
from rlhf.loop.runner import run_loop

__all__ = ["LoopConfig", "load_loop_config", "run_loop"]
