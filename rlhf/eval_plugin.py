"""Registers rlhf's rewards, the learned reward model among them, with the evaluation harness.

The `artalign.eval_plugins` entry point names this module: `evaluation` does not import `rlhf`,
it finds the rewards by name in `evaluation.registry.REWARDS` once this module is imported.
"""

from __future__ import annotations

import rlhf.align.rewards  # noqa: F401  (its import registers the rewards)
